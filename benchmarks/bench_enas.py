"""ENAS-style search at CPU scale (Zhu 2019) on celeba299 -> LFW: controller learning, latency term, retrain vs random.

One command per step (each resumable: a finished step is skipped, a killed search resumes)::

    python -m benchmarks.bench_enas lut                      # ENAS space latency table (onnxruntime, 1 thread)
    python -m benchmarks.bench_enas search --target loose    # (run the two searches in two CPU slots)
    python -m benchmarks.bench_enas search --target tight
    python -m benchmarks.bench_enas retrain --which top      # top-3 of the tight search, from scratch
    python -m benchmarks.bench_enas retrain --which random   # 3 random arcs of matching latency, same budget
    python -m benchmarks.bench_enas report                   # -> benchmarks/results/bench_enas.json + curves PNG

Budget (stated in the result): the ENAS space at 64x64 (5 cells of 4 nodes, 16 channels), searches of
``--epochs`` alternating epochs of ``--steps`` child minibatches and ``--controller-steps`` controller
updates of 8 arcs each, per-arc reward arcsin(Acc x (L/T)^q) with q = ``--exponent`` above the target
and no bonus below it. The two targets are the 20th ("tight") and 95th ("loose") percentiles of the
LUT-predicted latency of 500 uniformly random arcs, so the loose search is effectively
accuracy-only and the tight one pays for latency. Retraining uses the CPU protocol's recipe
(benchmarks/PROTOCOL.md) with ``--epochs-retrain`` epochs for every network (top-3 and random alike).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import RESULTS_DIR, artifacts_dir, save_result
from facenas.utils.io import read_json, write_json
from facenas.utils.log import setup_logging

log = logging.getLogger("bench_enas")
SPACE_CONFIG: dict[str, Any] = {"input_size": 64, "embedding_size": 128}
PERCENTILES = {"tight": 20, "loose": 95}


def _space():
    from facenas.nas.space import create_space

    return create_space("enas", **SPACE_CONFIG)


def _lut_path(art: Path) -> Path:
    return art / "lut_enas_onnxruntime_t1.json"


def step_lut(art: Path) -> None:
    from facenas.adapters.runtime.lut import BuildConfig, build_table

    build_table(BuildConfig(space="enas", space_config=SPACE_CONFIG, runtime="onnxruntime", threads=1, calibrate=10),
                _lut_path(art))


def _predictor(art: Path):
    from facenas.adapters.runtime.latency_model import LatencyModel

    space = _space()
    return space, LatencyModel.load(_lut_path(art), space).predict  # the one model every method uses


def _random_latencies(art: Path, n: int = 500, seed: int = 123) -> tuple[list[dict], np.ndarray]:
    space, predict = _predictor(art)
    rng = np.random.default_rng(seed)
    samples = [space.sample(rng) for _ in range(n)]
    return samples, np.array([predict(s) for s in samples])


def _targets(art: Path) -> dict[str, float]:
    _, lats = _random_latencies(art)
    return {k: float(np.percentile(lats, p)) for k, p in PERCENTILES.items()}


def _search_result(folder: Path) -> dict[str, Any] | None:
    """A finished search's result (``final.json``; ``search_result.json`` for searches run before the
    search moved onto the shared loop, whose ``top`` list held the architectures' paths)."""
    if (folder / "final.json").is_file():
        return read_json(folder / "final.json")
    if (folder / "search_result.json").is_file():
        legacy = read_json(folder / "search_result.json")
        return {**legacy, "architectures": legacy.get("top", [])}
    return None


def _search_epochs(folder: Path) -> list[dict[str, Any]]:
    """A search's completed epochs: its ``train_metrics.jsonl`` epoch records (``search_epochs.json`` before)."""
    from facenas.engine.loop import metric_records

    if (folder / "search_epochs.json").is_file() and not (folder / "train_metrics.jsonl").is_file():
        return read_json(folder / "search_epochs.json")
    return [r for r in metric_records(folder / "train_metrics.jsonl") if r.get("type") == "epoch" and "reward" in r]


def step_search(art: Path, target: str, args) -> dict[str, Any]:
    from facenas.plugins.enas.search import CHECKPOINT, SearchConfig, run_search

    out = art / (f"search_{target}_{args.variant}" if args.variant else f"search_{target}")
    done = _search_result(out)
    if done is not None:
        log.info("search %s: done before", target)
        return done
    t_ms = _targets(art)[target]
    cfg = SearchConfig(space="enas", space_config=dict(SPACE_CONFIG), rec="celeba299", epochs=args.epochs,
                       steps_per_epoch=args.steps, controller_steps=args.controller_steps, arcs_per_step=8,
                       reward={"target_ms": t_ms, "exponent": args.exponent, "exponent_faster": 0.0},
                       latency={"lut": str(_lut_path(art))}, candidates=args.candidates, top_k=3, seed=args.seed,
                       controller={"lr": args.controller_lr, "advantage": args.advantage},
                       val_batch_size=args.val_batch_size,
                       threads=1, max_minutes=args.max_minutes, resume=(out / CHECKPOINT).is_file())
    log.info("search %s: target %.3f ms", target, t_ms)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench_args.json", {"target": target, "target_ms": t_ms, "exponent": args.exponent,
                                         "variant": args.variant, "controller_lr": args.controller_lr,
                                         "advantage": args.advantage})
    return run_search(cfg, out)


def _retrain(arch: dict | str, out: Path, epochs: int) -> dict[str, Any]:
    from facenas.plugins.enas.retrain import retrain_arch

    if (out / "final.json").is_file():
        return read_json(out / "final.json")
    t0 = time.monotonic()
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "celeba299_enas_retrain_cpu.py"
    final = retrain_arch(arch, out, config=recipe, overrides={"num_epoch": epochs, "warmup_epoch": min(1, epochs - 1), "threads": 1, "val_every_epoch": epochs,
                                               "resume": (out / "train" / "checkpoint.pt").is_file()},
                         latency={"lut": str(_lut_path(Path(out).parents[1]))})
    final["wall_minutes"] = round((time.monotonic() - t0) / 60, 2)
    write_json(out / "final.json", final)
    return final


def step_retrain(art: Path, which: str, args) -> None:
    from facenas.nas.space import load_description

    search = _search_result(art / "search_tight")
    if search is None:
        raise SystemExit(f"no finished search in {art / 'search_tight'}; run `python -m benchmarks.bench_enas search "
                         "--target tight` first")
    top = [load_description(t["arch"]) for t in search["architectures"]]
    if which == "top":
        for i, desc in enumerate(top, 1):
            _retrain(desc, art / "retrain" / f"top{i}", args.epochs_retrain)
        return
    # random arcs whose predicted latency is within 10% of each top arc's (same budget, same recipe)
    samples, lats = _random_latencies(art, n=2000, seed=args.seed + 7)
    space = _space()
    used: set[int] = set()
    for i, entry in enumerate(search["architectures"], 1):
        want = float(entry["latency_ms"])
        order = np.argsort(np.abs(lats - want))
        j = next(int(k) for k in order if int(k) not in used)
        used.add(j)
        desc = space.describe(samples[j])
        write_json(art / "retrain" / f"random{i}" / "arch.json", desc)
        _retrain(desc, art / "retrain" / f"random{i}", args.epochs_retrain)


def _row(final: dict[str, Any]) -> dict[str, Any]:
    keys = ("lfw_acc", "lfw_acc_std", "lfw_tar_at_far_1e-3", "latency_ms", "mflops", "params_m", "wall_minutes")
    return {k: final.get(k) for k in keys}


def step_report(art: Path, args) -> dict[str, Any]:
    result: dict[str, Any] = {"space_config": SPACE_CONFIG, "artifacts": str(art), "budget": {
        "search_epochs": args.epochs, "search_max_minutes": args.max_minutes, "child_steps_per_epoch": args.steps,
        "controller_steps": args.controller_steps, "controller_lr": args.controller_lr, "advantage": args.advantage,
        "val_batch_size": args.val_batch_size,
        "arcs_per_controller_step": 8, "exponent_q": args.exponent, "candidates_ranked": args.candidates,
        "retrain_epochs": args.epochs_retrain, "threads": 1, "data": "celeba299 8:1:1 per-identity split (search), "
        "full celeba299 (retrain)", "test": "lfw.bin (10 folds, flip)"}}
    try:
        result["targets_ms"] = _targets(art)
        _, lats = _random_latencies(art)
        result["random_arcs_latency_ms"] = {"mean": float(lats.mean()), "p20": float(np.percentile(lats, 20)),
                                            "p95": float(np.percentile(lats, 95))}
    except FileNotFoundError:
        result["targets_ms"] = None
    curves = {}
    searches = sorted(p.name[len("search_"):] for p in art.glob("search_*") if p.is_dir())  # tight, loose, variants
    for target in searches:
        ep = _search_epochs(art / f"search_{target}")
        if ep:
            curves[target] = [{k: e.get(k) for k in ("epoch", "reward", "accuracy", "latency_ms", "entropy",
                                                       "greedy_latency_ms")} for e in ep]
        r = _search_result(art / f"search_{target}")
        if r is not None:
            result[f"search_{target}"] = {k: r.get(k) for k in ("val_acc", "latency_ms", "search_seconds")}
            args_file = art / f"search_{target}" / "bench_args.json"
            if args_file.is_file():
                result[f"search_{target}"]["settings"] = read_json(args_file)
            elif target in PERCENTILES:  # searches run before bench_args.json existed: the report's own settings
                result[f"search_{target}"]["settings"] = {"target": target, "exponent": args.exponent,
                                                          "controller_lr": args.controller_lr, "advantage": args.advantage}
            result[f"search_{target}"]["top"] = [{k: t.get(k) for k in ("rank", "val_acc", "latency_ms", "mflops",
                                                                         "params_m")} for t in r["architectures"]]
    result["curves"] = curves
    if curves:
        # mean LUT latency of the arcs the controller sampled: first two epochs vs last two, per search
        result["sampled_latency_first_last_ms"] = {t: [float(np.mean([c["latency_ms"] for c in rows[:2]])),
                                                       float(np.mean([c["latency_ms"] for c in rows[-2:]]))]
                                                   for t, rows in curves.items() if rows}
        result["entropy_first_last"] = {t: [rows[0]["entropy"], rows[-1]["entropy"]] for t, rows in curves.items() if rows}
    if all(t in curves and curves[t] for t in PERCENTILES):
        last = {t: [c["latency_ms"] for c in curves[t][-2:]] for t in PERCENTILES}
        result["sampled_latency_last_epochs_ms"] = {t: float(np.mean(v)) for t, v in last.items()}
        result["tight_below_loose"] = result["sampled_latency_last_epochs_ms"]["tight"] < \
            result["sampled_latency_last_epochs_ms"]["loose"]
    rows = {}
    for name in ("top1", "top2", "top3", "random1", "random2", "random3"):
        f = art / "retrain" / name / "final.json"
        rows[name] = _row(read_json(f)) if f.is_file() else None
    result["retrain"] = rows
    done = {k: v for k, v in rows.items() if v and v.get("lfw_acc") is not None}
    tops = [v["lfw_acc"] for k, v in done.items() if k.startswith("top")]
    rands = [v["lfw_acc"] for k, v in done.items() if k.startswith("random")]
    if tops and rands:
        result["mean_lfw_acc"] = {"enas_top": float(np.mean(tops)), "random": float(np.mean(rands))}
    if curves:
        _plot(curves, RESULTS_DIR / "bench_enas_curves.png")
        result["curves_png"] = "benchmarks/results/bench_enas_curves.png"
    save_result("bench_enas", result)
    return result


def _plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for target, rows in curves.items():
        ep = [r["epoch"] for r in rows]
        for ax, key in zip(axes, ("reward", "entropy", "latency_ms")):
            ax.plot(ep, [r[key] for r in rows], marker="o", label=target)
            ax.set_title(key)
            ax.set_xlabel("epoch")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("lut", "search", "retrain", "report"))
    ap.add_argument("--target", choices=tuple(PERCENTILES), default="tight")
    ap.add_argument("--variant", default="", help="a second search of the same target with other settings "
                    "(e.g. --exponent -3): written to search_<target>_<variant>/")
    ap.add_argument("--which", choices=("top", "random"), default="top")
    ap.add_argument("--artifacts", default=str(artifacts_dir("enas")))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop the search once its child training has taken this long (then rank the candidates)")
    ap.add_argument("--steps", type=int, default=30, help="child minibatches per epoch")
    ap.add_argument("--controller-steps", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=30)
    ap.add_argument("--exponent", type=float, default=-0.5)
    ap.add_argument("--val-batch-size", type=int, default=128, help="validation images per controller step")
    ap.add_argument("--controller-lr", type=float, default=0.0035, help="Adam LR of the controller (ENAS: 0.0035)")
    ap.add_argument("--advantage", choices=("ema", "batch_norm"), default="batch_norm",
                    help="REINFORCE advantage (ControllerConfig.advantage; ENAS: ema)")
    ap.add_argument("--epochs-retrain", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    setup_logging(0)
    import torch

    torch.set_num_threads(1)
    art = Path(args.artifacts)
    art.mkdir(parents=True, exist_ok=True)
    if args.step == "lut":
        step_lut(art)
    elif args.step == "search":
        step_search(art, args.target, args)
    elif args.step == "retrain":
        step_retrain(art, args.which, args)
    else:
        step_report(art, args)


if __name__ == "__main__":
    main()
