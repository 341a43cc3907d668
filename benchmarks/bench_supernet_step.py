"""Training-step cost of the OFA face supernet vs the static subnet it extracts (same architecture, same batch).

    python -m benchmarks.bench_supernet_step [--rounds 5] [--steps 5] [--threads 1]

For the largest, a middle and the smallest subnet of the CPU-scale space (64x64, 128-d), one SGD step
(forward, ArcFace-free linear loss, backward, update) at batch 64 is timed on the supernet with the
subnet active and on the extracted static network, in interleaved rounds (median of rounds), on the
thread-CPU clock (1 thread: robust to other jobs on a shared machine). The ratio is the overhead of
elastic kernels / depths / widths during supernet training. Result: ``benchmarks/results/bench_supernet_step.json``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks._common import save_result

SPACE_CONFIG = {"input_size": 64, "embedding_size": 128}


def _step_time(model: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.thread_time()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        opt.step()
    return (time.thread_time() - t0) / steps


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from facenas.plugins.ofa.network import StageChoice
    from facenas.plugins.ofa.train import _largest
    from facenas.nas.space import create_space

    space = create_space("ofa", **SPACE_CONFIG)
    largest = _largest(space)
    archs = {"largest": largest,
             "middle": [StageChoice(3, (5,) * 3, (4,) * 3)] * len(largest),
             "smallest": [StageChoice(2, (3,) * 2, (3,) * 2)] * len(largest)}
    x = torch.randn(args.batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rows = {}
    for name, arch in archs.items():
        supernet = space.supernet()
        supernet.set_active(arch)
        static = supernet.get_active_subnet()
        _step_time(supernet, x, 1), _step_time(static, x, 1)  # warm-up
        t_super, t_static = [], []
        for _ in range(args.rounds):
            t_super.append(_step_time(supernet, x, args.steps))
            t_static.append(_step_time(static, x, args.steps))
        s, t = float(np.median(t_super)), float(np.median(t_static))
        rows[name] = {"supernet_step_s": round(s, 4), "static_step_s": round(t, 4), "ratio": round(s / t, 3),
                      "mflops": space.flops(space.sample_from_arch(arch)) / 1e6}
        print(name, rows[name], flush=True)
    return save_result("bench_supernet_step", {"space_config": SPACE_CONFIG, "batch": args.batch, "threads": args.threads,
                                               "rounds": args.rounds, "steps_per_round": args.steps, "clock": "thread CPU time",
                                               "subnets": rows,
                                               "ratio_supernet_vs_static": rows["largest"]["ratio"]})


if __name__ == "__main__":
    main()
