"""Seeded, bounded fuzzing of the data readers (issue 18's must-show), through `benchmarks.fuzz_data`.

Each case is a mutated copy of a small valid dataset read by `facenas data info`, `facenas eval`
or the training loader in its own process (30 s timeout, address-space limit, peak RSS from
wait4). Every case must be clean: refused with one line and exit code 2, or read identically to
the valid data; none may run code, print a traceback, hang, exceed max(1 GiB, 20x its bytes)
of RSS, or be accepted with different data.
"""
from __future__ import annotations

import json
import pickletools
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fuzz_data import MARKER, code_pickles

REPO = Path(__file__).resolve().parents[2]


def _run(cases: int, seed: int, out: Path, timeout: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.fuzz_data", "--cases", str(cases), "--seed", str(seed),
                           "--timeout", "30", "--json-out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert out.exists(), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    not_clean = [c for c in result["cases"] if c["outcome"] not in ("refused", "identical")]
    assert not not_clean, json.dumps(not_clean, indent=1)[:6000]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return result


def _check(result: dict, cases: int) -> None:
    assert result["tried"] == cases and result["clean"] == cases
    for key in ("traceback", "hang", "oom", "accepted", "crash", "code_executed"):
        assert result[key] == 0, key
    assert all(c["peak_rss_mb"] <= c["rss_bound_mb"] and c["seconds"] < 30 for c in result["cases"])
    # every kind of file and every reader was exercised
    families = set(result["families"])
    assert {"rec.header", "rec.label", "rec.payload", "idx", "property", "bin.code"} <= families
    assert {c["target"] for c in result["cases"]} == {"info", "eval", "loader"}
    assert result["identical"] >= 2  # benign mutations (no property, numpy-array images) read as the valid data


def test_crafted_pickles_of_the_fuzz_would_run_code():
    """The marker check can fail: each crafted pickle names a callable that runs code and calls it.

    Read statically with pickletools (nothing is unpickled in this repository outside the
    restricted .bin reader).
    """
    dangerous = {"posix system", "os system", "builtins exec", "builtins eval", "__builtin__ eval",
                 "builtins getattr", "subprocess Popen"}
    for name, data in code_pickles().items():
        ops = list(pickletools.genops(data))
        strings = [arg for op, arg, _ in ops if isinstance(arg, str)]
        named = {arg.replace("\n", " ").strip() for op, arg, _ in ops if op.name in ("GLOBAL", "INST")}
        named |= {f"{a} {b}" for a, b in zip(strings, strings[1:])}  # STACK_GLOBAL: module, name
        assert named & dangerous, (name, named)
        assert any(op.name in ("REDUCE", "INST") for op, _, _ in ops), name
        assert any(MARKER in s for s in strings), name


def test_fuzz_small(tmp_path):
    """40 cases: the issue's cases (pinned) and seeded random mutations; < 10 s of CPU."""
    _check(_run(40, 0, tmp_path / "fuzz.json", timeout=300), 40)


@pytest.mark.slow
def test_fuzz_large(tmp_path):
    """320 cases (the run recorded in benchmarks/results/fuzz_data.json uses the same seed)."""
    _check(_run(320, 0, tmp_path / "fuzz.json", timeout=1800), 320)
