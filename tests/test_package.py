"""Packaging: the wheel maps adapters/, plugins/, recipes/ under facenas/ and nothing else at top level."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_has_only_facenas_at_top_level(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
    )
    (wheel,) = tmp_path.glob("facenas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"facenas", next(t for t in tops if t.endswith(".dist-info"))}
    assert "facenas/adapters/insightface/__init__.py" in names
    assert "facenas/nas/space.py" in names
    assert "facenas/plugins/toy.py" in names
    assert "facenas/recipes/__init__.py" in names


def test_mapped_packages_import_from_repo():
    import facenas.adapters.insightface
    import facenas.plugins.toy
    import facenas.recipes

    assert Path(facenas.adapters.insightface.__file__).resolve().parent == REPO / "adapters" / "insightface"
    assert Path(facenas.plugins.toy.__file__).resolve().parent == REPO / "plugins"
