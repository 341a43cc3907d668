"""``torchrun`` inside a trial: a training stage given ``nproc_per_node`` runs as N DDP processes.

A trial is one process that NNI starts on a machine with ``trialGpuNumber`` GPUs. A stage that
trains (``engine.train``, ``ofa.train_supernet``) and is given ``nproc_per_node: N`` writes its
resolved config next to its outputs and runs::

    python -m torch.distributed.run --standalone --nproc_per_node=N -m facenas.cli <train ...> RECIPE --output OUT

then hands the per-epoch records of ``OUT/train_metrics.jsonl`` to the trial's reporter (after the
run: the trial process only waits) and returns ``OUT/final.json``. ``N = 1`` runs the launcher with
one process (what the single-GPU files do; raise it with ``trialGpuNumber``). Inside a process
group already (``WORLD_SIZE`` set) the stage trains in-process instead.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from facenas.errors import ConfigError, FacenasError
from facenas.nas.report import Reporter
from facenas.utils.io import read_json, read_jsonl

log = logging.getLogger(__name__)

RECIPE_NAME = "torchrun_recipe.py"
LOG_NAME = "torchrun.log"


def wants_torchrun(params: Mapping[str, Any]) -> int | None:
    """``nproc_per_node`` from a stage's parameters (None: train in this process)."""
    value = params.get("nproc_per_node")
    if value is None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"nproc_per_node={value!r} must be an integer >= 1 (processes, one per GPU)")
    return value


def run_torchrun(command: Sequence[str], config: Mapping[str, Any], output: str | os.PathLike, nproc: int,
                 reporter: Reporter | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run ``facenas <command> RECIPE --output OUTPUT`` under torchrun with ``nproc`` processes; its final.json."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    recipe = out / RECIPE_NAME
    recipe.write_text("# written by the trial: the stage's resolved config, run under torchrun\nimport json\n"
                      f"config = json.loads({json.dumps(json.dumps(dict(config)))})\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "facenas.cli", *command, str(recipe), "--output", str(out)]
    log.info("torchrun in the trial: %s (log: %s)", " ".join(cmd[2:]), out / LOG_NAME)
    with open(out / LOG_NAME, "w", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        raise FacenasError(f"torchrun ({nproc} process(es)) of `facenas {' '.join(command)}` exited with "
                           f"{proc.returncode}: {_error_line(out / LOG_NAME)} (log: {out / LOG_NAME})")
    if reporter is not None:
        for record in read_jsonl(out / "train_metrics.jsonl"):
            if record.get("type") == "epoch":
                numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                numbers.setdefault("default", -float(numbers.get("loss", 0.0)))
                reporter.intermediate(numbers)
    if not (out / "final.json").is_file():
        raise FacenasError(f"torchrun of `facenas {' '.join(command)}` ended without {out / 'final.json'} "
                           f"(log: {out / LOG_NAME})")
    return dict(read_json(out / "final.json"))


def _error_line(log_file: Path) -> str:
    """The workers' one-line facenas error, else the log's last line."""
    lines = [l.strip() for l in log_file.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("facenas ") and ": error: " in l]
    return (errors or lines or ["(empty log)"])[-1][:400]
