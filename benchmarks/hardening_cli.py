"""The CLI and recipe cases of issue 18 as subprocesses: how many end with one line and the right exit code.

    python -m benchmarks.hardening_cli                 # all cases, ~3 min on 2 cores
    python -m benchmarks.hardening_cli --only train    # the cases whose name starts with "train"

Each case runs ``python -m facenas.cli ...`` (bounded: ``--timeout`` seconds each) in a scratch
folder and is classified:

- ``clean``: exit code as expected (2 for the user's input, 3 for the environment), one line on
  stderr, no traceback;
- ``traceback``: a Python traceback on stderr (or exit 1, the interpreter's code for one);
- ``hang``: still running after the timeout (killed);
- ``accepted``: exit 0 for input that must be refused;
- ``wrong_code``: one line, but another exit code than expected.

Environment cases: a write past ``ulimit -f`` (EFBIG: portable, no privileges) and, where this
process may mount (root), a real full 256 KiB tmpfs (ENOSPC) and a read-only tmpfs (EROFS); the
mounts are skipped, and reported as skipped, elsewhere. Results go to
``benchmarks/results/hardening_cli.json`` with every case's command, exit code and stderr line.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

try:
    from ._common import save_result
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import save_result  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
NNI_RECIPES = REPO / "recipes" / "nni"

#: the fields of a one-epoch MobileFaceNet x0.125 recipe over a synthetic set (rec filled in per case)
TINY_FIELDS = {"network": "mbf", "network_kwargs": {"width_mult": 0.125}, "image_size": 32, "embedding_size": 16,
               "num_classes": 0, "batch_size": 8, "num_epoch": 1, "lr": 0.05, "frequent": 1, "verbose": 1000,
               "val_every_epoch": 0, "threads": 1, "num_workers": 0, "device": "cpu"}


def tiny_recipe(rec: str) -> str:
    """A recipe module's text: a TrainConfig with :data:`TINY_FIELDS` and ``rec``."""
    lines = ["from facenas.plugins.engine import TrainConfig", "config = TrainConfig()"]
    lines += [f"config.{k} = {v!r}" for k, v in {**TINY_FIELDS, "rec": rec}.items()]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _yml(work: Path, name: str, change: Callable[[dict[str, Any]], None], base: str = "toy_tpe_test.yml") -> Path:
    import yaml

    data = yaml.safe_load((NNI_RECIPES / base).read_text(encoding="utf-8"))
    if data.get("searchSpaceFile"):
        data["searchSpaceFile"] = str(NNI_RECIPES / data["searchSpaceFile"])
    data["trialCodeDirectory"] = str(NNI_RECIPES)
    change(data)
    return _write(work / "yml" / f"{name}.yml", yaml.safe_dump(data, sort_keys=False))


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[bool]:
    """Mount a tmpfs at ``path`` (root only); yields False where mounting is not possible."""
    path.mkdir(parents=True, exist_ok=True)
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                              capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", str(path)], capture_output=True)


def _classify(code: int | None, stderr: str, expected: int) -> str:
    if code is None:
        return "hang"
    if "Traceback (most recent call last)" in stderr or code == 1:
        return "traceback"
    if code == 0:
        return "accepted"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        return "traceback"  # several lines of noise count as a traceback-like failure
    return "clean" if code == expected else "wrong_code"


def run_case(name: str, args: list[str], expected: int, cwd: Path, timeout: float,
             fsize: int | None = None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "facenas.cli", "-q", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    verdict = _classify(code, err, expected)
    last = (err.strip().splitlines() or [""])[-1]
    return {"case": name, "command": "facenas " + " ".join(args), "expected_exit": expected, "exit": code,
            "verdict": verdict, "stderr_lines": len(err.strip().splitlines()), "stderr_last": last[:400],
            "seconds": round(time.monotonic() - t0, 2)}


def build_cases(work: Path, data: Path, model: Path) -> list[tuple[str, list[str], int, dict[str, Any]]]:
    """(name, argv, expected exit code, extra run_case kwargs) of every case that needs no mount."""
    recipes = work / "recipes"
    ok = _write(recipes / "ok.py", tiny_recipe(str(data)))
    finished = work / "finished"
    _write(finished / "final.json", json.dumps({"loss": 1.0, "global_step": 6}))
    _write(finished / "checkpoint.pt", "stands for a finished run's checkpoint")
    a_file = _write(work / "a_file", "not a folder")
    cases: list[tuple[str, list[str], int, dict[str, Any]]] = [
        ("train: missing module", ["train", "nonexistent_recipe_xyz"], 2, {}),
        ("train: os (a frozen module)", ["train", "os"], 2, {}),
        ("train: json (a stdlib package)", ["train", "json"], 2, {}),
        ("train: a.b.c (missing package)", ["train", "a.b.c"], 2, {}),
        ("train: missing .py path", ["train", "no/such/recipe.py"], 2, {}),
        ("train: recipe with a syntax error", ["train", str(_write(recipes / "syntax.py", "config = {\n"))], 2, {}),
        ("train: recipe with a failing import",
         ["train", str(_write(recipes / "imp.py", "import nonexistent_module_xyz\n"))], 2, {}),
        ("train: recipe raising while it runs",
         ["train", str(_write(recipes / "raises.py", tiny_recipe("x") + "config.lr = 1 / 0\n"))], 2, {}),
        ("train: recipe with a misspelt field",
         ["train", str(_write(recipes / "typo.py", tiny_recipe("x") + "config.lerning_rate = 0.1\n"))], 2, {}),
        ("train: recipe assigning config = 5", ["train", str(_write(recipes / "five.py", "config = 5\n"))], 2, {}),
        ("train: recipe without config", ["train", str(_write(recipes / "none.py", "x = 1\n"))], 2, {}),
        ("train: --output naming a file", ["train", str(ok), "--output", str(a_file)], 2, {}),
        ("train: --output under a file", ["train", str(ok), "--output", str(a_file / "sub")], 2, {}),
        ("train: --set without =", ["train", str(ok), "--set", "lr"], 2, {}),
        ("train: --resume with no checkpoint", ["train", str(ok), "--resume", "--output", str(work / "empty")], 2, {}),
        ("train: --resume --overwrite", ["train", str(ok), "--resume", "--overwrite"], 2, {}),
        ("train: fresh run into a finished folder", ["train", str(ok), "--output", str(finished)], 2, {}),
        ("train: a write past ulimit -f (EFBIG)", ["train", str(ok), "--output", str(work / "fsize")], 3,
         {"fsize": 64 * 1024}),
        ("latency: missing .onnx", ["latency", "--model", str(work / "missing.onnx")], 2, {}),
        ("latency: missing .tflite", ["latency", "--model", str(work / "missing.tflite"), "--runtime", "tflite"], 2, {}),
        ("latency: missing .pt", ["latency", "--model", str(work / "missing.pt")], 2, {}),
        ("latency: unknown backbone", ["latency", "--model", "nosuchnet"], 2, {}),
        ("eval: missing model", ["eval", "--model", str(work / "missing.onnx"), "--bin", str(data / "val.bin")], 2, {}),
        ("eval: --batch-size 0", ["eval", "--model", str(model), "--bin", str(data / "val.bin"), "--batch-size", "0"], 2, {}),
        ("eval: --batch-size -1", ["eval", "--model", str(model), "--bin", str(data / "val.bin"), "--batch-size", "-1"], 2,
         {}),
        ("export: missing checkpoint", ["export", "--model", str(work / "missing.pt"), "--out", str(work / "x.onnx")], 2,
         {}),
        ("nni space: --output is a folder", ["nni", "space", "toy", "--output", str(work)], 2, {}),
        ("nni create: missing file", ["nni", "create", str(work / "missing.yml")], 2, {}),
        ("nni create: not YAML", ["nni", "create", str(_write(work / "yml" / "bad.yml", "a: [1,\n"))], 2, {}),
        ("nni create: no searchSpaceFile",
         ["nni", "create", str(_yml(work, "nospace", lambda c: c.pop("searchSpaceFile")))], 2, {}),
        ("nni create: trialConcurrency -3",
         ["nni", "create", str(_yml(work, "conc", lambda c: c.update(trialConcurrency=-3)))], 2, {}),
        ("nni create: misspelt tuner",
         ["nni", "create", str(_yml(work, "tuner", lambda c: c["tuner"].update(name="TPEE")))], 2, {}),
        ("nni create: misspelt facenas advisor",
         ["nni", "create", str(_yml(work, "advisor", lambda c: c["tuner"].update(name="FacenasPipline"), "toy_test.yml"))],
         2, {}),
        ("nni create: unknown field",
         ["nni", "create", str(_yml(work, "field", lambda c: c.update(trialConcurency=2)))], 2, {}),
        ("nni create: unknown platform",
         ["nni", "create", str(_yml(work, "platform", lambda c: c["trainingService"].update(platform="locall")))], 2, {}),
        ("nni create: bad duration",
         ["nni", "create", str(_yml(work, "duration", lambda c: c.update(maxExperimentDuration="10x")))], 2, {}),
        ("nni create: reference to an unknown step",
         ["nni", "create", str(_yml(work, "ref", lambda c: c["tuner"]["classArgs"]["steps"][-1]["params"].update(
             x="${nope.result.x}"), "toy_test.yml"))], 2, {}),
        ("nni results: missing experiment", ["nni", "results", "nosuchexperiment", "--experiment-dir", str(work / "none")],
         2, {}),
    ]
    return cases


def _prepare(work: Path) -> tuple[Path, Path]:
    """Small synthetic data (train.rec + val.bin) and a small model file for the cases."""
    from facenas.adapters.insightface.backbones import get_model, save_backbone
    from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset

    data = work / "data"
    write_synthetic_dataset(data, SyntheticConfig(num_identities=4, images_per_identity=4, val_identities=4,
                                                  val_pairs=20, seed=0))
    net = get_model("mbf", num_features=16, width_mult=0.125, input_size=32)
    model = work / "model.pt"
    save_backbone(net, model, network=net.facenas_network, embedding_size=16)
    return data, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the cases whose name starts with this")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--no-save", action="store_true", help="print, do not write benchmarks/results")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="facenas-hardening-") as tmp:
        work = Path(tmp)
        data, model = _prepare(work)
        ok = work / "recipes" / "ok.py"
        cases = build_cases(work, data, model)
        for name, argv, expected, extra in cases:
            if args.only and not name.startswith(args.only):
                continue
            rows.append(run_case(name, argv, expected, work, args.timeout, **extra))
            print(f"{rows[-1]['verdict']:>10}  {name}: exit {rows[-1]['exit']}: {rows[-1]['stderr_last'][:150]}",
                  flush=True)
        mounted = [
            ("train: output on a full 256 KiB tmpfs (ENOSPC)", "size=256k", ["train", str(ok), "--output", "{mnt}/run"]),
            ("train: output on a read-only tmpfs (EROFS)", "ro,size=64k", ["train", str(ok), "--output", "{mnt}/run"]),
            ("nni space: --output on a read-only tmpfs (EROFS)", "ro,size=64k",
             ["nni", "space", "toy", "--output", "{mnt}/space.json"]),
            ("data synth: into a read-only tmpfs (EROFS)", "ro,size=64k", ["data", "synth", "{mnt}/synth",
                                                                          "--identities", "2"]),
        ]
        for i, (name, options, argv) in enumerate(mounted):
            if args.only and not name.startswith(args.only):
                continue
            mnt = work / f"mnt{i}"
            with _tmpfs(mnt, options) as ok_mount:
                if not ok_mount:
                    skipped.append(f"{name} (cannot mount a tmpfs here: not root or no CAP_SYS_ADMIN)")
                    continue
                rows.append(run_case(name, [a.replace("{mnt}", str(mnt)) for a in argv], 3, work, args.timeout))
                print(f"{rows[-1]['verdict']:>10}  {name}: exit {rows[-1]['exit']}: {rows[-1]['stderr_last'][:150]}",
                      flush=True)
    counts = {k: sum(r["verdict"] == k for r in rows) for k in ("clean", "traceback", "hang", "accepted", "wrong_code")}
    result = {"tried": len(rows), **counts, "skipped": skipped, "timeout_s": args.timeout, "cases": rows}
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}))
    if not args.no_save and not args.only:
        sys.argv[0] = "-m benchmarks.hardening_cli"  # the command as typed, not this checkout's absolute path
        save_result("hardening_cli", result)
    return 0 if counts["clean"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
