"""Batch-1 latency of a model in onnxruntime, TFLite or torch: warm-up, then median and p90.

A *runner* is a zero-argument callable that performs one inference on a fixed input (built once,
so input creation is not timed). :func:`time_runner` calls it ``warmup`` times, then at least
``runs`` times and for at least ``min_time_s`` seconds, and reports order statistics of the
per-call wall times (median and p90: the median is what lookup tables store, because on a shared
machine the mean is pulled up by other processes' bursts).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from facenas.errors import ConfigError, DataFormatError, require

log = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime", "tflite", "torch")

Runner = Callable[[], Any]


@dataclasses.dataclass
class LatencyResult:
    """Latency statistics of one model in one runtime (milliseconds, batch 1)."""

    runtime: str
    threads: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    input_shape: list[int]
    model: str = ""
    input_size: list[int] | None = None  # (H, W) of the image the model took, whatever its layout


    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def device_info() -> dict[str, Any]:
    """The CPU and runtime versions a latency belongs to (stored with every table and result)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    versions = {}
    for pkg in ("onnxruntime", "tensorflow-cpu", "tensorflow", "torch", "onnx"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[pkg] = importlib.metadata.version(pkg)
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "platform": platform.platform(), "versions": versions}


#: ``wall``: elapsed time (what a user waits); ``cpu``: CPU time of the calling thread, which for
#: a 1-thread runtime (onnxruntime, TFLite and torch all compute on the caller's thread then) is
#: the latency on an idle device: time the thread spends preempted by other processes on a shared
#: machine is not counted.
CLOCKS = ("wall", "cpu")


def time_runner(runner: Runner, warmup: int = 10, runs: int = 50, min_time_s: float = 0.0,
                clock: str = "wall") -> np.ndarray:
    """Per-call times (seconds) of ``runner`` after ``warmup`` untimed calls, on ``clock``."""
    if clock not in CLOCKS:
        raise ConfigError(f"clock '{clock}' is not one of {list(CLOCKS)}")
    now = time.perf_counter if clock == "wall" else time.thread_time
    for _ in range(warmup):
        runner()
    times = []
    t_start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - t_start < min_time_s:
        t0 = now()
        runner()
        times.append(now() - t0)
        if len(times) >= 100 * max(runs, 1):  # bounded even if min_time_s is huge
            break
    return np.asarray(times)


def summarize(times: np.ndarray, runtime: str, threads: int, warmup: int, input_shape, model: str = "") -> LatencyResult:
    ms = times * 1e3
    return LatencyResult(runtime, int(threads), float(np.median(ms)), float(np.percentile(ms, 90)), float(ms.mean()),
                         float(ms.min()), int(ms.size), int(warmup), [int(v) for v in input_shape], model,
                         image_size(input_shape, runtime))


def image_size(input_shape, runtime: str) -> list[int] | None:
    """``[H, W]`` of a batch-1 image input: NHWC for TFLite, NCHW otherwise (``None`` if not 4-D)."""
    shape = [int(v) for v in input_shape]
    if len(shape) != 4:
        return None
    return shape[1:3] if runtime == "tflite" else shape[2:4]


def runtime_of(model: Any, runtime: str | None) -> str:
    """The runtime to measure ``model`` in: as given, else from a ``.tflite`` / ``.onnx`` file name, else onnxruntime."""
    if runtime is not None:
        return runtime
    text = os.fspath(model) if isinstance(model, (str, os.PathLike)) else ""
    if text.endswith(".tflite"):
        return "tflite"
    return "onnxruntime"


# -- runners ------------------------------------------------------------------------------------------
def onnx_session(model: str | os.PathLike | bytes, threads: int = 1):
    """An onnxruntime CPU session with ``threads`` intra-op threads, sequential execution."""
    ort = require("onnxruntime", "onnxruntime latency")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def _concrete_shape(shape: list, default_hw: tuple[int, int] | None = None) -> list[int]:
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif i == 0:
            out.append(1)
        else:
            raise ConfigError(f"input dimension {i} is symbolic ({d}); export the model with a fixed input size")
    return out


def onnx_runner(model: str | os.PathLike | bytes, threads: int = 1, seed: int = 0) -> tuple[Runner, list[int]]:
    sess = onnx_session(model, threads)
    inp = sess.get_inputs()[0]
    shape = _concrete_shape(inp.shape)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    feeds = {inp.name: x}
    names = [o.name for o in sess.get_outputs()]
    return (lambda: sess.run(names, feeds)), shape


def torch_runner(module, input_shape: tuple[int, ...], threads: int = 1, seed: int = 0) -> tuple[Runner, list[int]]:
    import torch

    from facenas.utils.seed import torch_generator

    module = module.eval()
    x = torch.randn(1, *input_shape, generator=torch_generator(seed))

    def run():
        with torch.inference_mode():
            return module(x)

    return run, [1, *input_shape]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# -- the public entry point ---------------------------------------------------------------------------
def measure_latency(model: Any, runtime: str | None = None, threads: int = 1, warmup: int = 10, runs: int = 50,
                    min_time_s: float = 0.0, network: str | None = None, clock: str = "wall",
                    input_size: tuple[int, int] | None = None) -> LatencyResult:
    """Batch-1 latency of ``model`` in ``runtime``.

    Args:
        model: an ``.onnx`` or ``.tflite`` file, a facenas checkpoint, an architecture description
            (``.json``/dict: fresh weights), a backbone name, or an ``nn.Module``. A torch model is
            exported (to a temporary file, batch 1) for onnxruntime / TFLite.
        runtime: ``onnxruntime``, ``tflite`` or ``torch``; ``None``: ``tflite`` for a ``.tflite``
            file, else ``onnxruntime``.
        threads: intra-op threads of the runtime.
        warmup, runs, min_time_s, clock: see :func:`time_runner` (``clock="cpu"`` needs ``threads=1``).
        network: backbone name for an arcface_torch bare state dict.
        input_size: ``(H, W)`` the model takes: a torch model is measured behind the export's
            resize when it differs from its native size (default: native); a file must have it.
    """
    runtime = runtime_of(model, runtime)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime '{runtime}' is not one of {list(RUNTIMES)}")
    if clock == "cpu" and threads != 1:
        raise ConfigError("--clock cpu times the calling thread only; use it with --threads 1")
    label = model if isinstance(model, (str, os.PathLike)) else type(model).__name__
    label = os.fspath(label) if isinstance(label, os.PathLike) else str(label)
    text = os.fspath(model) if isinstance(model, (str, os.PathLike)) else ""
    if text.endswith((".onnx", ".tflite")) and not os.path.isfile(text):  # the runtimes' own errors are tracebacks
        raise DataFormatError(text, "no such model file", "give an existing .onnx / .tflite file, a checkpoint, "
                              "an architecture JSON or a backbone name")
    with contextlib.ExitStack() as stack:
        if text.endswith(".onnx"):
            if runtime != "onnxruntime":
                raise ConfigError(f"{text} is an ONNX file; measure it with --runtime onnxruntime "
                                  "(or give the checkpoint / architecture to measure it in another runtime)")
            runner, shape = onnx_runner(text, threads)
        elif text.endswith(".tflite"):
            if runtime != "tflite":
                raise ConfigError(f"{text} is a TFLite file; measure it with --runtime tflite")
            from .tflite_export import tflite_runner

            runner, shape = tflite_runner(text, threads)
        else:
            from .models import deployable, load_model

            loaded = load_model(model, network)
            size = tuple(input_size) if input_size is not None else tuple(loaded.input_size)
            module = deployable(loaded.module, size, tuple(loaded.input_size))
            shape_chw = (3, *size)
            if runtime == "torch":
                stack.enter_context(torch_threads(threads))
                runner, shape = torch_runner(module, shape_chw, threads)
            elif runtime == "onnxruntime":
                path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facenas-lat-"))) / "model.onnx"
                from .onnx_export import torch_export

                torch_export(module, path, shape_chw, dynamic_batch=False)
                runner, shape = onnx_runner(path, threads)
            else:
                from .tflite_export import torch_to_tflite, tflite_runner

                runner, shape = tflite_runner(torch_to_tflite(module, shape_chw), threads)
        _check_file_size(text, image_size(shape, runtime), input_size)
        times = time_runner(runner, warmup, runs, min_time_s, clock)
    result = summarize(times, runtime, threads, warmup, shape, label)
    log.info("%s [%s, %d thread(s)]: median %.3f ms, p90 %.3f ms over %d runs", label, runtime, threads,
             result.median_ms, result.p90_ms, result.runs)
    return result


def _check_file_size(path: str, size: list[int] | None, wanted: tuple[int, int] | None) -> None:
    if wanted is not None and size is not None and list(size) != [int(v) for v in wanted]:
        raise ConfigError(f"{path} takes {size[0]}x{size[1]} input, not the requested {wanted[0]}x{wanted[1]}; "
                          "export it at that size (facenas export --input-size) or give the checkpoint")


def measure_runtimes(model: Any, runtimes: list[str], input_size: tuple[int, int] | None = None,
                     **kwargs: Any) -> dict[str, LatencyResult]:
    """Latency of one torch model in several runtimes, every one at the same input size.

    A side-by-side report compares runtimes only when they ran the same network on the same
    image: a file exported at 112 (resize in front) next to a checkpoint measured at its native
    64 px would compare two different computations. Files hold one runtime's form: give the
    checkpoint / description for several.
    """
    text = os.fspath(model) if isinstance(model, (str, os.PathLike)) else ""
    if len(runtimes) > 1 and text.endswith((".onnx", ".tflite")):
        raise ConfigError(f"{text} runs in one runtime only; give the checkpoint or architecture to compare "
                          f"{', '.join(runtimes)} at one input size")
    results = {rt: measure_latency(model, rt, input_size=input_size, **kwargs) for rt in runtimes}
    sizes = {tuple(r.input_size or ()) for r in results.values()}
    if len(sizes) > 1:  # a guard: every runtime above was given the same module and size
        raise ConfigError(f"runtimes measured {model} at different input sizes {sorted(sizes)}")
    return results
