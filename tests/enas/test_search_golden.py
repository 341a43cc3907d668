"""The ENAS search reproduces the numbers pinned in tests/data/enas/search_golden.json bit for bit.

The digests (final supernet, classifier head and controller weights, baseline, ranked candidates
of two tiny searches: the softmax head and a PartialFC margin head) were written by
``tests/data/enas/make_golden.py`` with the search as it was before it moved onto the shared loop;
the same script's searches must still end with the same numbers.
"""
from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from tests.golden import require_recorded_platform

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "enas"
GOLDEN = json.loads((GOLDEN_DIR / "search_golden.json").read_text())


#: the script's functions (the same searches it ran to write the digests)
MAKE_GOLDEN = runpy.run_path(str(GOLDEN_DIR / "make_golden.py"))


@pytest.fixture(scope="module")
def golden_rec(tmp_path_factory) -> str:
    return str(MAKE_GOLDEN["make_synthetic"](tmp_path_factory.mktemp("enas_golden")))


@pytest.mark.parametrize("name", sorted(GOLDEN["runs"]))
def test_search_matches_the_golden_digests(name, golden_rec, tmp_path):
    require_recorded_platform()
    got = MAKE_GOLDEN["run"](name, golden_rec, tmp_path / name)
    assert got == GOLDEN["runs"][name]
