"""Helpers every benchmark uses: machine/version metadata and saving results as JSON.

Each benchmark is one command (``python -m benchmarks.<name>``) that prints its result and saves
``benchmarks/results/<name>.json`` with the machine, package versions and command line, so the
summary (``python -m benchmarks.summary``) can be regenerated from recorded JSON alone.
Performance figures are ratios measured side by side in the same run.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Environment variable naming the folder benchmarks keep checkpoints and step outputs in.
ARTIFACTS_ENV = "FACENAS_ARTIFACTS"


def artifacts_dir(name: str) -> Path:
    """Where a benchmark keeps its large outputs: ``$FACENAS_ARTIFACTS/<name>``, else
    ``work_dirs/artifacts/<name>`` in the repository (ignored by git)."""
    root = os.environ.get(ARTIFACTS_ENV)
    base = Path(root) if root else Path(__file__).resolve().parents[1] / "work_dirs" / "artifacts"
    return base / name

_PACKAGES = ("facenas", "torch", "numpy", "opencv-python", "onnxruntime", "onnx", "lightgbm", "nni", "tensorflow-cpu", "scipy")


def machine_info() -> dict[str, Any]:
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


def portable(value: Any, places: dict[str, str] | None = None) -> Any:
    """``value`` with this machine's paths written as names (the repository as ``.``, the data folder
    as ``$FACENAS_SHARED_DATA``, the artifacts folder, Python's prefix, the home folder), so records
    name no machine; ``places`` adds more ``{path: name}`` pairs (e.g. a run's output folder)."""
    from facenas.utils.paths import shared_data_dir

    repo = Path(__file__).resolve().parents[1]
    known = {**(places or {}), str(shared_data_dir().resolve()): "$" + "FACENAS_SHARED_DATA",
             str(artifacts_dir("").resolve()): "$" + ARTIFACTS_ENV, str(repo): ".",
             str(Path(sys.base_prefix).resolve()): "$PYTHON_PREFIX", str(Path.home()): "~"}
    if isinstance(value, str):
        for path in sorted(known, key=len, reverse=True):  # the longest (most specific) first
            value = value.replace(path, known[path])
        return value
    if isinstance(value, dict):
        return {k: portable(v, places) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, places) for v in value]
    return value


def save_result(name: str, result: dict[str, Any], out_dir: Path | None = None, load_average: bool = False,
                places: dict[str, str] | None = None) -> Path:
    """Write ``result`` with metadata to ``benchmarks/results/<name>.json`` and print it.

    ``load_average``: add the machine's 1/5/15-minute load averages to ``result`` (context for a
    speed figure measured on a shared machine). Paths are written through :func:`portable`
    (``places``: more ``{path: name}`` pairs).
    """
    from facenas.utils.io import write_json

    if load_average:
        result["load_average_1_5_15_min"] = [round(v, 2) for v in os.getloadavg()]
    record = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine_info(),
        "result": result,
    }
    record = portable(record, places)
    path = (out_dir or RESULTS_DIR) / f"{name}.json"
    write_json(path, record)
    print(json.dumps(result, indent=2, default=str))
    print(f"saved {path}")
    return path


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Minimum wall time of ``repeat`` calls (seconds): the least noisy figure on a shared machine."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
