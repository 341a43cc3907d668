"""CPU training throughput of candidate CPU-scale configurations (input to benchmarks/PROTOCOL.md).

One command: ``python -m benchmarks.bench_cpu_throughput [--steps N] [--threads 2]``. For each
candidate (backbone, kwargs, input size, batch size) it times full training steps -- forward,
PartialFC margin loss over 299 classes, backward, SGD step -- on random images (data decoding
is measured separately by the data layer), reports images/s, MFLOPs (MACs) and parameters, and
saves ``benchmarks/results/bench_cpu_throughput.json``. Run it under the heavy-work lock.
"""
from __future__ import annotations

import os

# before torch is imported: idle OpenMP threads sleep instead of spinning (shared machine, see PROTOCOL.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import time

import torch

from benchmarks._common import save_result
from facenas.adapters.insightface.backbones import get_model
from facenas.adapters.insightface.losses import build_margin_head
from facenas.adapters.insightface.partial_fc import PartialFC
from facenas.nas.flops import count_flops, count_params

# (label, network, kwargs, batch size)
CANDIDATES = [
    ("mbf@112", "mbf", {"input_size": 112}, 64),
    ("mbf@96", "mbf", {"input_size": 96}, 64),
    ("mbf@80", "mbf", {"input_size": 80}, 64),
    ("mbf@64", "mbf", {"input_size": 64}, 64),
    ("mbf_w0.5@112", "mbf", {"input_size": 112, "width_mult": 0.5}, 64),
    ("mbf_w0.5@80", "mbf", {"input_size": 80, "width_mult": 0.5}, 64),
    ("mbf_w0.5@64", "mbf", {"input_size": 64, "width_mult": 0.5}, 64),
    ("mbf@64 bs128", "mbf", {"input_size": 64}, 128),
    ("mbf@64 bs32", "mbf", {"input_size": 64}, 32),
    ("r18_w0.25@112", "r18", {"input_size": 112, "width_mult": 0.25}, 64),
    ("r18_w0.25@64", "r18", {"input_size": 64, "width_mult": 0.25}, 64),
    ("r18_w0.5@64", "r18", {"input_size": 64, "width_mult": 0.5}, 64),
    ("airface_w0.5_d0.34@64", "airface", {"input_size": 64, "width_mult": 0.5, "depth_mult": 0.34}, 64),
    ("airface_w0.5_d0.34@80", "airface", {"input_size": 80, "width_mult": 0.5, "depth_mult": 0.34}, 64),
    ("airface@112", "airface", {"input_size": 112}, 64),
]


def time_config(network: str, kwargs: dict, batch: int, steps: int, embedding: int = 128) -> dict:
    torch.manual_seed(0)
    size = int(kwargs.get("input_size", 112))
    model = get_model(network, num_features=embedding, **kwargs)
    head = PartialFC(build_margin_head("combined", (1.0, 0.5, 0.0)), embedding, 299)
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.1, momentum=0.9,
                          weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 299, (batch,))
    model.train()

    def step() -> None:
        loss = head(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, oneDNN primitive creation)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    model.eval()
    return {
        "network": network, "kwargs": kwargs, "batch_size": batch, "embedding_size": embedding,
        "train_images_per_s": round(batch * steps / dt, 1), "seconds_per_step": round(dt / steps, 3),
        "mflops": round(count_flops(model, (1, 3, size, size)) / 1e6, 1),
        "params_m": round(count_params(model) / 1e6, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="labels to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for label, network, kwargs, batch in CANDIDATES:
        if args.only and label not in args.only:
            continue
        rows[label] = time_config(network, kwargs, batch, args.steps)
        print(label, rows[label], flush=True)
    save_result("bench_cpu_throughput", {"threads": args.threads, "steps": args.steps, "configs": rows})


if __name__ == "__main__":
    main()
