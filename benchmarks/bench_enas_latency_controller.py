"""ENAS latency term in isolation: the controller alone under a tight and a loose latency target.

The CPU-scale search (``bench_enas``) trains the shared weights for only ~150 minibatches, so the
accuracy part of every reward is near chance and its noise hides the latency term. This check
removes the child network: each arc's reward is Zhu 2019's Eq. 5 with the accuracy held at 1,
``arcsin((L/T)^e)`` (``e = q`` above the target, 0 below), with ``L`` the ENAS latency table's
prediction for the arc (the same table and the same two targets as ``bench_enas``: the 20th and
95th percentiles of 500 random arcs' latency; a third run without a target, whose reward is
constant, shows the drift that the entropy bonus and Adam's normalised steps alone cause). The real controller (LSTM, REINFORCE, baseline,
entropy bonus) is trained for ``--steps`` updates of 8 arcs; the mean predicted latency of the
sampled arcs and the policy entropy are recorded per update. Expected: under the tight target
the sampled latency falls; under the loose one (almost every arc already meets it) it stays put.

Costs no network evaluation (a few seconds of 1-thread CPU per target)::

    python -m benchmarks.bench_enas_latency_controller   # -> benchmarks/results/bench_enas_latency_controller.json + .png
"""
from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import RESULTS_DIR, artifacts_dir, save_result
from benchmarks.bench_enas import PERCENTILES, _predictor, _targets
from facenas.utils.log import setup_logging

log = logging.getLogger("bench_enas_latency_controller")


def run_target(art: Path, target_ms: float | None, args) -> dict[str, Any]:
    from facenas.plugins.enas.controller import Controller, ControllerConfig, ReinforceTrainer
    from facenas.plugins.enas.reward import RewardConfig, latency_reward

    space, predict = _predictor(art)
    controller = Controller(space, ControllerConfig(lr=args.lr), seed=args.seed)
    trainer = ReinforceTrainer(controller)
    reward_cfg = RewardConfig(target_ms=target_ms, exponent=args.exponent, exponent_faster=0.0)
    curve = []
    for step in range(1, args.steps + 1):
        samples = [controller.sample() for _ in range(8)]
        lats = [predict(s) for s in samples]
        rewards = [latency_reward(1.0, lat, reward_cfg) for lat in lats]
        stats = trainer.update(samples, rewards)
        curve.append({"step": step, "latency_ms": float(np.mean(lats)), "reward": float(np.mean(rewards)),
                      "entropy": stats["entropy"], "under_target": None if target_ms is None else float(np.mean([lat <= target_ms for lat in lats]))})
    first, last = curve[:10], curve[-10:]
    return {"target_ms": target_ms, "curve": curve,
            "latency_first10_ms": float(np.mean([c["latency_ms"] for c in first])),
            "latency_last10_ms": float(np.mean([c["latency_ms"] for c in last])),
            "entropy_first10": float(np.mean([c["entropy"] for c in first])),
            "entropy_last10": float(np.mean([c["entropy"] for c in last])),
            "greedy_latency_ms": float(predict(controller.greedy()))}


def _plot(runs: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, run in runs.items():
        steps = [c["step"] for c in run["curve"]]
        t = run["target_ms"]
        line = axes[0].plot(steps, [c["latency_ms"] for c in run["curve"]],
                            label=f"{name} (T={t:.3f} ms)" if t is not None else f"{name} (constant reward)")
        if t is not None:
            axes[0].axhline(t, color=line[0].get_color(), ls=":", lw=1)
        axes[1].plot(steps, [c["entropy"] for c in run["curve"]], label=name)
    axes[0].set_title("mean LUT latency of the 8 sampled arcs (ms)")
    axes[1].set_title("policy entropy (nats)")
    for ax in axes:
        ax.set_xlabel("controller update")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default=str(artifacts_dir("enas")), help="holds bench_enas's latency table")
    ap.add_argument("--steps", type=int, default=40, help="controller updates (8 arcs each) per target")
    ap.add_argument("--lr", type=float, default=0.05, help="controller Adam learning rate (search default 0.0035)")
    ap.add_argument("--exponent", type=float, default=-0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    setup_logging(0)
    import torch

    torch.set_num_threads(1)
    art = Path(args.artifacts)
    targets: dict[str, float | None] = {**_targets(art), "no_target": None}
    runs = {}
    for name in (*PERCENTILES, "no_target"):
        t0 = time.monotonic()
        runs[name] = run_target(art, targets[name], args)
        runs[name]["seconds"] = round(time.monotonic() - t0, 1)
        log.info("%s: T %s ms, sampled latency %.4f -> %.4f ms, entropy %.2f -> %.2f (%.0f s)", name, targets[name],
                 runs[name]["latency_first10_ms"], runs[name]["latency_last10_ms"], runs[name]["entropy_first10"],
                 runs[name]["entropy_last10"], runs[name]["seconds"])
    png = RESULTS_DIR / "bench_enas_latency_controller.png"
    _plot(runs, png)
    result = {"what": "controller alone, reward arcsin(1 x (L/T)^q) from the ENAS latency table (no child network)",
              "budget": {"controller_updates": args.steps, "arcs_per_update": 8, "controller_lr": args.lr,
                         "exponent_q": args.exponent, "threads": 1, "seed": args.seed},
              "runs": runs, "png": str(png.relative_to(RESULTS_DIR.parents[1])),
              "tight_latency_falls": runs["tight"]["latency_last10_ms"] < runs["tight"]["latency_first10_ms"],
              "tight_below_loose_last10": runs["tight"]["latency_last10_ms"] < runs["loose"]["latency_last10_ms"],
              "loose_below_no_target_last10": runs["loose"]["latency_last10_ms"] < runs["no_target"]["latency_last10_ms"]}
    if not all(math.isfinite(c["reward"]) for r in runs.values() for c in r["curve"]):
        raise RuntimeError("non-finite reward")
    save_result("bench_enas_latency_controller", result)


if __name__ == "__main__":
    main()
