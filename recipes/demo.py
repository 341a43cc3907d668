"""``facenas demo``: the main job -- a complete face NAS end to end, as an NNI experiment, on its embedded default.

With no arguments it

1. writes synthetic identities (``adapters/insightface/synthetic``) as a real InsightFace
   ``train.rec/.idx/property`` plus an open-set ``val.bin`` into ``WORK/data`` (no downloads);
2. starts an NNI experiment on a loopback port with the web portal up (the address is printed)
   whose FacenasPipeline advisor runs the TNAS method (Wang et al., AAAI 2021) as trials:
   ``teacher`` (engine.train: an IResNet-18 at quarter width), ``search`` (tnas.search:
   teacher-guided width/depth search under a FLOPs target, Gumbel-softmax + channel-wise
   interpolation, per-epoch curves in the portal), ``student`` (tnas.train: the derived
   architecture trained from scratch by feature distillation) and ``uniform`` (the uniformly
   narrowed network of the same FLOPs, same budget, for comparison);
3. reads the results, exports the found network to ONNX (loadable by ``insightface.model_zoo``),
   measures its batch-1 latency with onnxruntime on 1 thread, draws the accuracy-versus-latency
   plot of the trained networks, and prints the summary (``--json``: one JSON object last).

``--rec DIR --val A.bin [--val B.bin]`` runs the same pipeline on real InsightFace data (the
first ``--val`` set drives the search's validation; all are reported), ``--scale`` picks the
budget. A rerun with the same ``--work`` reuses the data and a finished experiment (delete
``WORK/experiment.json`` to search again). The experiment's NNI home is ``WORK/nni-home`` and its
NNI config folder ``WORK/nni-config`` (kept apart from ``~/nni-experiments``): the summary prints
the whole command to view it later, ``HOME=WORK/nni-home NNI_CONFIG_DIR=WORK/nni-config facenas
nni view ID`` (with absolute paths), and ``facenas nni view`` then prints the stop command with the
same environment.

Only the ``student`` is a candidate network (the portal's best trial); the teacher and the
uniformly narrowed network are ``reference`` networks, the search ``auxiliary`` (their final
``default`` is NaN in the portal: see :mod:`facenas.adapters.nni.pipeline`).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("facenas.demo")

#: Budgets of the pipeline. ``demo`` finishes in a few minutes on 2 CPU cores (synthetic data, 32x32).
SCALES: dict[str, dict[str, Any]] = {
    "demo": {"image_size": 32, "embedding_size": 64, "teacher_epochs": 4, "search_epochs": 3,
             "student_epochs": 4, "batch_size": 32, "space": {"base": "r18", "width_mult": 0.25}},
    "cpu": {"image_size": 64, "embedding_size": 128, "teacher_epochs": 20, "search_epochs": 8,
            "student_epochs": 20, "batch_size": 64, "space": {"base": "r18", "width_mult": 0.5}},
    "gpu": {"image_size": 112, "embedding_size": 512, "teacher_epochs": 20, "search_epochs": 10,
            "student_epochs": 20, "batch_size": 128, "space": {"base": "r50", "width_mult": 1.0}},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run a complete TNAS search as an NNI experiment (synthetic data by default)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="work_dirs/demo", help="working folder (data, NNI home, outputs, summary)")
    p.add_argument("--rec", default=None, help="training data: an InsightFace .rec/.idx folder or an image folder")
    p.add_argument("--val", action="append", default=None, metavar="BIN", help="verification .bin (repeatable)")
    p.add_argument("--scale", choices=tuple(SCALES), default=None, help="budget (default: demo; cpu with --rec)")
    p.add_argument("--identities", type=int, default=100, help="synthetic identities (default data only)")
    p.add_argument("--port", type=int, default=0, help="portal port on 127.0.0.1 (0: a free one)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the experiment")
    p.add_argument("--keep-portal", action="store_true", help="leave the experiment (portal) running at the end")
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial (2 trials run at once)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object (last line)")
    p.set_defaults(handler=run_demo)


# -- the experiment ------------------------------------------------------------------------------
def _data(args: argparse.Namespace, work: Path) -> tuple[str, list[str]]:
    """Training folder and verification .bin paths (synthetic ones written once into WORK/data)."""
    from facenas.errors import ConfigError

    if args.rec is not None:
        rec = Path(args.rec)
        if not rec.exists():
            raise ConfigError(f"--rec {rec}: no such folder; give an InsightFace .rec/.idx folder or an image folder")
        vals = args.val or []
        if not vals:
            raise ConfigError("--rec needs at least one --val A.bin (the search validates on the first one)")
        for v in vals:
            if not Path(v).is_file():
                raise ConfigError(f"--val {v}: no such file; give a verification .bin (e.g. lfw.bin)")
        return str(rec.resolve()), [str(Path(v).resolve()) for v in vals]
    if args.val:
        raise ConfigError("--val needs --rec (the synthetic default brings its own val.bin)")
    data = work / "data"
    if not (data / "train.idx").is_file() or not (data / "val.bin").is_file():
        from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset

        log.info("writing %d synthetic identities to %s", args.identities, data)
        write_synthetic_dataset(data, SyntheticConfig(num_identities=args.identities))
    return str(data.resolve()), [str((data / "val.bin").resolve())]


def experiment_config(rec: str, vals: list[str], scale: str, threads: int) -> dict[str, Any]:
    """The NNI experiment (v2 schema) running the TNAS pipeline with the FacenasPipeline advisor."""
    s = SCALES[scale]
    space = {**s["space"], "input_size": s["image_size"], "embedding_size": s["embedding_size"]}
    train_common = {"rec": rec, "image_size": s["image_size"], "embedding_size": s["embedding_size"],
                    "batch_size": s["batch_size"], "lr": 0.1, "num_workers": 0, "device": "auto", "threads": threads,
                    "verbose": 100000, "frequent": 20, "val_targets": vals[:1], "test_targets": vals,
                    "val_every_epoch": 1}
    teacher = "${teacher.result.output}/best.pt"
    steps = [
        {"name": "teacher", "role": "reference", "stage": "engine.train", "params": {"config": {
            **train_common, "network": s["space"]["base"], "network_kwargs": {"width_mult": s["space"]["width_mult"]},
            "num_epoch": s["teacher_epochs"], "warmup_epoch": 1}}},
        {"name": "search", "role": "auxiliary", "stage": "tnas.search", "space": "tnas", "space_config": space,
         "params": {
            "space": space, "teacher": teacher, "rec": rec, "batch_size": s["batch_size"],
            "num_epoch": s["search_epochs"], "target_width_ratio": 0.5, "arch_lr": 0.1, "threads": threads,
            "device": "auto", "seed": 0, "num_workers": 0}},
        {"name": "student", "role": "candidate", "stage": "tnas.train", "params": {
            "config": {**train_common, "num_epoch": s["student_epochs"], "warmup_epoch": 1},
            "arch": "${search.result.arch_path}", "sample": "${search.arch.sample}", "distill": {"teacher": teacher}}},
        {"name": "uniform", "role": "reference", "stage": "tnas.train", "params": {
            "config": {**train_common, "num_epoch": s["student_epochs"], "warmup_epoch": 1},
            "uniform_ratio": 0.5, "space": space, "distill": {"teacher": teacher}}},
    ]
    return {
        "experimentName": f"facenas-demo-tnas-{scale}",
        "trialCommand": "python -m facenas.adapters.nni.trial",
        "trialConcurrency": 2,
        "maxTrialNumber": 8,
        "maxExperimentDuration": "12h",
        "tuner": {"name": "FacenasPipeline", "classArgs": {"name": f"demo_tnas_{scale}", "seed": 0, "steps": steps}},
        "trainingService": {"platform": "local"},
    }


def _run_experiment(cfg_path: Path, work: Path, port: int, timeout: float, keep: bool) -> dict[str, Any]:
    """Create the experiment on loopback, print the portal, wait until the pipeline is done."""
    from facenas.adapters.nni import launch
    from facenas.adapters.nni.cli import command_with_env
    from facenas.errors import FacenasError
    from facenas.utils.io import write_json

    env = launch.nni_env(home=work / "nni-home", config_dir=work / "nni-config")
    launch.register(env)
    port = port or launch.free_port()
    info = launch.create(cfg_path, port=port, env=env)
    info["view_command"] = command_with_env(f"facenas nni view {info['experiment_id']}", env)
    info["stop_command"] = command_with_env(f"facenas nni stop {info['experiment_id']}", env)
    write_json(work / "experiment.json", {**info, "status": "RUNNING"})
    print(f"NNI web portal: {info['url']}  (experiment {info['experiment_id']}; trials log under {info['output_dir']})",
          flush=True)
    client = launch.RestClient(port)
    client.wait_reachable()
    start, seen, status = time.time(), {}, "RUNNING"
    try:
        while True:
            status = client.status().get("status", "?")
            trials = client.trials()
            for t in trials:
                step = ((t.get("parameters") or {}).get("facenas") or {}).get("step", "?")
                if seen.get(t["trial_id"]) != t["status"]:
                    seen[t["trial_id"]] = t["status"]
                    log.info("trial %s (%s): %s%s", t["trial_id"], step, t["status"],
                             f" -- default {t['final'].get('default'):.4f}" if isinstance(t.get("final"), dict)
                             and isinstance(t["final"].get("default"), (int, float)) else "")
            if status in ("DONE", "STOPPED", "ERROR"):
                break
            if time.time() - start > timeout:
                raise FacenasError(f"experiment {info['experiment_id']} not done after {timeout:.0f} s; it keeps running "
                                   f"at {info['url']} (stop: {info['stop_command']})")
            time.sleep(2.0)
        failed = [t for t in trials if t["status"] == "FAILED"]
        if status == "ERROR" or failed:
            raise FacenasError(f"experiment {info['experiment_id']} ended {status} with {len(failed)} failed trial(s); "
                               f"trial logs are under {info['output_dir']}")
    finally:
        if not keep or status != "DONE":
            launch.stop(info["experiment_id"], env=env)
    info["status"] = status
    info["seconds"] = round(time.time() - start, 1)
    write_json(work / "experiment.json", info)
    return info


# -- the summary ---------------------------------------------------------------------------------
def _first(metrics: dict[str, Any], suffix: str, sets: list[str]) -> Any:
    for name in sets:
        if f"{name}{suffix}" in metrics:
            return metrics[f"{name}{suffix}"]
    return None


def summarize_demo(info: dict[str, Any], vals: list[str], work: Path) -> dict[str, Any]:
    """Found architecture, accuracy, latency, MFLOPs, params, ONNX path and plot of a finished demo."""
    from facenas.adapters.nni.results import summarize
    from facenas.adapters.runtime.latency import measure_latency
    from facenas.adapters.runtime.models import load_model
    from facenas.adapters.runtime.onnx_export import export_onnx
    from facenas.errors import FacenasError
    from facenas.utils.io import write_json

    summary = summarize(info["output_dir"], info["experiment_id"])
    sets = [Path(v).stem for v in vals]
    rows: dict[str, dict[str, Any]] = {}
    for row in summary["trials"]:
        if row["status"] == "SUCCEEDED" and row["step"] in ("teacher", "student", "uniform") and row.get("checkpoint"):
            rows[row["step"]] = row
    if "student" not in rows:
        raise FacenasError(f"the experiment in {info['output_dir']} has no successful 'student' trial with a checkpoint")
    search = next((r for r in summary["trials"] if r["step"] == "search" and r["status"] == "SUCCEEDED"), None)
    networks = {}
    for step, row in rows.items():
        row["checkpoint"] = _checkpoint_file(row["checkpoint"])
        loaded = load_model(row["checkpoint"])
        size = tuple(loaded.input_size)
        onnx_path = work / f"{step}.onnx"
        export_onnx(loaded.module, onnx_path, (112, 112), native_size=size)
        lat = measure_latency(str(onnx_path), "onnxruntime", threads=1, warmup=10, runs=50, min_time_s=0.2)
        m = row["metrics"]
        networks[step] = {
            "checkpoint": row["checkpoint"], "onnx": str(onnx_path.resolve()),
            "accuracy": _first(m, "_acc", sets), "accuracy_std": _first(m, "_acc_std", sets),
            "tar_at_far_1e-3": _first(m, "_tar_at_far_1e-3", sets), "latency_ms": round(lat.median_ms, 3),
            "mflops": m.get("mflops"), "params_m": m.get("params_m"), "trial_seconds": row.get("duration_s"),
        }
    student = networks["student"]
    plot = _plot(networks, work / "accuracy_latency.png", sets[0])
    result = {
        "experiment_id": info["experiment_id"], "portal": info["url"], "experiment_seconds": info.get("seconds"),
        "method": "TNAS (teacher-guided width/depth search, FKD students)",
        "found_architecture": _arch_of(rows["student"]), "verification_set": sets[0],
        "accuracy": student["accuracy"], "accuracy_std": student["accuracy_std"],
        "tar_at_far_1e-3": student["tar_at_far_1e-3"], "latency_ms_onnxruntime_1thread": student["latency_ms"],
        "mflops": student["mflops"], "params_m": student["params_m"], "onnx": student["onnx"],
        "search": _search_summary(search),
        "networks": networks, "plot": str(plot.resolve()),
        "view_command": info.get("view_command"),
    }
    write_json(work / "summary.json", result)
    return result


def _search_summary(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """FLOPs target, derived FLOPs and ``within_tolerance`` of the search trial, from its ``result.json``.

    The summary's rows keep numbers only, so a flag such as ``within_tolerance`` is read from the
    trial's own record.
    """
    from facenas.utils.io import read_json

    if row is None:
        return None
    result: dict[str, Any] = dict(row["metrics"])
    path = Path(row["out_dir"] or "") / "result.json"
    if path.is_file():
        record = read_json(path)
        result.update(record.get("result") or {})
        result.update({k: v for k, v in (record.get("metrics") or {}).items() if k not in result})
    return {k: result.get(k) for k in ("target_mflops", "mflops", "within_tolerance")}


def _checkpoint_file(path: str) -> str:
    """A trial's checkpoint: the file itself, or ``best.pt`` (else ``last.pt``) of its output folder."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return str(p / name)
    return str(p)


def _arch_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """The student's sample (depths and width ratios) from its checkpoint's architecture description."""
    from facenas.engine.checkpoint import read_model_file

    ckpt = read_model_file(row["checkpoint"])
    network = ckpt.get("network", {}) if isinstance(ckpt, dict) else {}
    arch = network.get("arch") if isinstance(network, dict) else None
    return arch.get("sample") if isinstance(arch, dict) else None


def _plot(networks: dict[str, dict[str, Any]], path: Path, set_name: str) -> Path:
    from facenas.utils.plot import plot_accuracy_latency

    names = [n for n in networks if networks[n]["accuracy"] is not None]
    return plot_accuracy_latency(names, [networks[n]["latency_ms"] for n in names],
                                 [networks[n]["accuracy"] for n in names], path,
                                 title=f"facenas demo (TNAS): accuracy on {set_name} vs latency",
                                 ylabel=f"{set_name} accuracy")


def _print_summary(res: dict[str, Any]) -> None:
    print("\nfacenas demo finished")
    print(f"  experiment      {res['experiment_id']} ({res['experiment_seconds']} s), portal was {res['portal']}")
    print(f"  method          {res['method']}")
    print(f"  found arch      {json.dumps(res['found_architecture'])}")
    acc = res["accuracy"]
    std = res["accuracy_std"]
    print(f"  verification    {res['verification_set']}: {acc:.4f} +- {std:.4f}" if acc is not None else
          "  verification    (not reported)")
    print(f"  latency         {res['latency_ms_onnxruntime_1thread']} ms (onnxruntime, 1 thread, batch 1)")
    print(f"  MFLOPs / params {res['mflops']:.2f} / {res['params_m']:.3f} M")
    print(f"  ONNX            {res['onnx']}")
    print(f"  plot            {res['plot']}")
    if res.get("view_command"):
        print(f"  view later      {res['view_command']}")
    print("  all trained networks (same verification set):")
    for step, n in res["networks"].items():
        acc = "n/a" if n["accuracy"] is None else f"{n['accuracy']:.4f}"
        print(f"    {step:8s} acc {acc}  latency {n['latency_ms']:.3f} ms  {n['mflops']:.2f} MFLOPs  {n['params_m']:.3f} M params")


def run_demo(args: argparse.Namespace) -> int:
    from facenas.utils.io import emit_json, read_json, write_json

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    scale = args.scale or ("cpu" if args.rec else "demo")
    rec, vals = _data(args, work)
    state_file = work / "experiment.json"
    info = read_json(state_file) if state_file.is_file() else None
    if info is None or info.get("status") != "DONE":
        import yaml

        cfg = experiment_config(rec, vals, scale, args.threads)
        cfg_path = work / "experiment.yml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        info = _run_experiment(cfg_path, work, args.port, args.timeout, args.keep_portal)
    else:
        log.info("reusing finished experiment %s (delete %s to search again)", info["experiment_id"], state_file)
    res = summarize_demo(info, vals, work)
    write_json(work / "summary.json", res)
    if args.json:
        emit_json(res)
    else:
        _print_summary(res)
    return 0
