"""Per-device latency lookup tables of a search space: build (resumable), predict, validate.

OFA (Cai et al. 2020, Sec. 3.4 / their ``LatencyTable``) predicts a subnet's latency as the sum of
its blocks' latencies measured once on the target device, keyed by the block's input and output
shape, kernel, expand ratio, stride, SE and activation. A space gives the blocks through
:meth:`~facenas.plugins.space.SearchSpace.all_latency_blocks` (every distinct one) and
:meth:`~facenas.plugins.space.SearchSpace.latency_blocks` (one sample's).

What limits a plain sum, and what the table corrects:

* **per-call overhead** -- every block measured alone pays the runtime's fixed cost of one
  inference call (binding input and output, dispatch, Python), which the whole network pays
  once. The table measures that cost on a trivial model and subtracts it from all but one block
  (``overhead``).
* **what no block sees** -- fusion and memory planning across block boundaries, cache state (a
  block measured alone runs with its weights and input hot in cache; inside a network the
  previous block evicted some), thread-pool wake-ups. These are systematic, so the table fits a
  linear correction ``measured ~ a + b * overhead_corrected_sum`` on ``calibrate`` whole subnets
  drawn with a seed of their own (``calibration``); validation uses other subnets.
* **noise** -- on a shared machine other processes inflate some runs; all latencies are medians
  of many runs after warm-up (the statistic is stored with the table), and validation repeats
  its measurements in interleaved rounds.

A table that lacks a block a sample needs raises :class:`MissingKeysError` listing the keys.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facenas.config import TypedConfig
from facenas.errors import ConfigError, FacenasError

log = logging.getLogger(__name__)

#: format tag of table files
LUT_FORMAT = "facenas.lut/1"
STATISTICS = ("median_ms", "p90_ms", "min_ms", "mean_ms")


class MissingKeysError(FacenasError, KeyError):
    """A table lacks blocks a network needs (OFA's own tables fail here with a bare KeyError)."""

    def __init__(self, missing: Sequence[str], source: str = "latency table"):
        self.missing = list(dict.fromkeys(missing))
        listing = "\n  ".join(self.missing)
        super().__init__(f"{source} has no entry for {len(self.missing)} block(s) the network needs:\n  {listing}\n"
                         "(the table was built for another space configuration, or its build was interrupted: "
                         "rerun `facenas lut build` with the same --out to measure the missing blocks)")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


@dataclasses.dataclass
class BuildConfig(TypedConfig):
    """Settings of ``facenas lut build``.

    Args:
        space: registered space name; ``space_config`` its constructor kwargs.
        runtime: ``onnxruntime``, ``tflite`` or ``torch``; ``threads`` its intra-op threads.
        warmup, runs, min_time_s: per measurement (see :func:`~.latency.time_runner`).
        calibrate: whole subnets measured to fit the correction (0: none).
        seed: seed of the calibration subnets.
        statistic: which latency statistic the table predicts (``median_ms`` by default).
    """

    space: str = "toy"
    space_config: dict = dataclasses.field(default_factory=dict)
    runtime: str = "onnxruntime"
    threads: int = 1
    warmup: int = 20
    runs: int = 100
    min_time_s: float = 0.2
    calibrate: int = 10
    seed: int = 0
    statistic: str = "median_ms"


# -- measuring modules in a runtime -------------------------------------------------------------------
class Measurer:
    """Batch-1 latency of torch modules in one runtime (export happens here, untimed)."""

    def __init__(self, runtime: str, threads: int = 1, warmup: int = 20, runs: int = 100, min_time_s: float = 0.2):
        from .latency import RUNTIMES

        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime '{runtime}' is not one of {list(RUNTIMES)}")
        self.runtime, self.threads = runtime, int(threads)
        self.warmup, self.runs, self.min_time_s = int(warmup), int(runs), float(min_time_s)

    def runner(self, module, input_shape: tuple[int, ...]):
        from .latency import onnx_runner, torch_runner

        module = module.eval()
        if self.runtime == "torch":
            return torch_runner(module, tuple(input_shape), self.threads)[0]
        if self.runtime == "tflite":
            from .tflite_export import tflite_runner, torch_to_tflite

            return tflite_runner(torch_to_tflite(module, tuple(input_shape)), self.threads)[0]
        from .onnx_export import torch_export

        with tempfile.TemporaryDirectory(prefix="facenas-lut-") as tmp:
            path = Path(tmp) / "block.onnx"
            torch_export(module, path, tuple(input_shape), dynamic_batch=False)
            return onnx_runner(path.read_bytes(), self.threads)[0]

    def time(self, runner) -> dict[str, float]:
        from .latency import time_runner, torch_threads

        ctx = torch_threads(self.threads) if self.runtime == "torch" else contextlib.nullcontext()
        with ctx:
            t = time_runner(runner, self.warmup, self.runs, self.min_time_s) * 1e3
        return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "min_ms": float(t.min()),
                "mean_ms": float(t.mean()), "runs": int(t.size)}

    def measure(self, module, input_shape: tuple[int, ...]) -> dict[str, float]:
        return self.time(self.runner(module, input_shape))

    def overhead(self) -> dict[str, float]:
        """Latency of a trivial model (ReLU of one value): the runtime's fixed cost per call."""
        from torch import nn

        return self.measure(nn.ReLU(), (1, 1, 1))


# -- the table ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class LatencyTable:
    """Block latencies of one space on one device and runtime, with the correction fitted on whole nets."""

    space: str
    space_config: dict
    runtime: str
    threads: int
    device: dict
    settings: dict
    entries: dict[str, dict] = dataclasses.field(default_factory=dict)
    overhead: dict | None = None
    calibration: dict | None = None
    calibration_networks: list[dict] = dataclasses.field(default_factory=list)
    path: str | None = dataclasses.field(default=None, compare=False)

    # -- persistence -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("path")
        return {"format": LUT_FORMAT, **d}

    def save(self, path: str | os.PathLike | None = None) -> None:
        from facenas.utils.io import write_json

        path = path or self.path
        if path is None:
            raise ValueError("no path to save the latency table to")
        write_json(path, self.to_dict())
        self.path = os.fspath(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        from facenas.errors import DataFormatError
        from facenas.utils.io import read_json

        source = os.fspath(path)
        if not os.path.isfile(source):
            raise DataFormatError(source, "no such latency table", "build one with `facenas lut build`")
        try:
            d = read_json(source)
        except ValueError as exc:
            raise DataFormatError(source, f"not JSON ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != LUT_FORMAT:
            raise DataFormatError(source, f"not a facenas latency table (expected \"format\": \"{LUT_FORMAT}\")")
        fields = {f.name for f in dataclasses.fields(cls)} - {"path"}
        missing = [k for k in ("space", "space_config", "runtime", "threads", "entries") if k not in d]
        if missing:
            raise DataFormatError(source, f"latency table lacks the field(s) {missing}")
        table = cls(**{k: v for k, v in d.items() if k in fields})
        table.path = source
        return table

    # -- prediction --------------------------------------------------------------------------------------
    @property
    def statistic(self) -> str:
        return self.settings.get("statistic", "median_ms")

    def create_space(self):
        from facenas.plugins.space import create_space

        return create_space(self.space, **self.space_config)

    def block_keys(self, sample: Mapping[str, Any], space=None) -> list[str]:
        space = space or self.create_space()
        return [b.key for b in space.latency_blocks(space.validate(sample))]

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.entries]

    def block_sum(self, keys: Sequence[str]) -> float:
        missing = self.missing(keys)
        if missing:
            raise MissingKeysError(missing, self.path or f"latency table of space '{self.space}'")
        stat = self.statistic
        return float(sum(self.entries[k][stat] for k in keys))

    def overhead_corrected(self, keys: Sequence[str]) -> float:
        """Sum of blocks minus the per-call overhead of all but one block."""
        total = self.block_sum(keys)
        if self.overhead:
            total -= (len(keys) - 1) * self.overhead[self.statistic]
        return total

    def predict_keys(self, keys: Sequence[str], corrected: bool = True) -> float:
        if not corrected:
            return self.block_sum(keys)
        x = self.overhead_corrected(keys)
        if self.calibration:
            x = self.calibration["offset_ms"] + self.calibration["scale"] * x
        return float(x)

    def predict(self, sample: Mapping[str, Any], space=None, corrected: bool = True) -> float:
        """Predicted latency (ms) of ``sample``'s network: corrected sum of its blocks."""
        return self.predict_keys(self.block_keys(sample, space), corrected)

    def check_space(self, space=None) -> list[str]:
        """Keys of the space's blocks that the table lacks (empty when complete)."""
        space = space or self.create_space()
        return self.missing([b.key for b in space.all_latency_blocks()])


# -- building -----------------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    import json

    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def build_table(cfg: BuildConfig, out: str | os.PathLike, save_every_s: float = 10.0) -> LatencyTable:
    """Measure every distinct block of ``cfg.space`` (resuming ``out`` if it exists), then calibrate."""
    from facenas.plugins.space import create_space
    from facenas.utils.progress import Progress

    from .latency import device_info

    if cfg.statistic not in STATISTICS:
        raise ConfigError(f"statistic '{cfg.statistic}' is not one of {list(STATISTICS)}")
    space = create_space(cfg.space, **cfg.space_config)
    settings = {"warmup": cfg.warmup, "runs": cfg.runs, "min_time_s": cfg.min_time_s, "statistic": cfg.statistic,
                "batch": 1}
    device = device_info()
    if os.path.isfile(out):
        table = LatencyTable.load(out)
        for name, have, want in (("space", table.space, cfg.space), ("space_config", table.space_config, space.config()),
                                 ("runtime", table.runtime, cfg.runtime), ("threads", table.threads, cfg.threads)):
            if not _same(have, want):
                raise ConfigError(f"{out} was built with {name}={have!r}, not {want!r}; give another --out "
                                  "or delete it to start over")
        if table.device.get("cpu") != device["cpu"]:
            log.warning("%s was started on '%s'; this machine is '%s'", out, table.device.get("cpu"), device["cpu"])
        log.info("resuming %s: %d entries measured", out, len(table.entries))
    else:
        table = LatencyTable(cfg.space, space.config(), cfg.runtime, cfg.threads, device, settings)
        table.path = os.fspath(out)
    measurer = Measurer(cfg.runtime, cfg.threads, cfg.warmup, cfg.runs, cfg.min_time_s)
    blocks = space.all_latency_blocks()
    todo = [b for b in blocks if b.key not in table.entries]
    if table.overhead is None:
        table.overhead = measurer.overhead()
        log.info("per-call overhead of %s (%d thread(s)): %.4f ms", cfg.runtime, cfg.threads,
                 table.overhead[cfg.statistic])
    prog = Progress(len(blocks), f"lut {cfg.space} [{cfg.runtime}]", unit="block", start=len(blocks) - len(todo))
    last_save = time.monotonic()
    for block in todo:
        entry = measurer.measure(block.build(), block.input_shape)
        entry["input_shape"] = list(block.input_shape)
        table.entries[block.key] = entry
        prog.update(1, last_ms=entry[cfg.statistic])
        if time.monotonic() - last_save > save_every_s:
            table.save(out)
            last_save = time.monotonic()
    prog.close()
    table.save(out)
    if cfg.calibrate > 0:
        calibrate_table(table, space, measurer, cfg.calibrate, cfg.seed, out)
    return table


def sample_subnets(space, n: int, seed: int) -> list[dict]:
    """``n`` distinct random samples (distinct networks, by their block lists) drawn from ``seed``."""
    from facenas.utils.seed import make_rng

    rng = make_rng(seed)
    out, seen = [], set()
    for _ in range(50 * n):
        s = space.validate(space.sample(rng))
        sig = tuple(b.key for b in space.latency_blocks(s))
        if sig in seen:
            continue
        seen.add(sig)
        out.append(s)
        if len(out) == n:
            break
    return out


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y ~ a + b x`` (b only, through the origin, when x barely varies)."""
    if x.size >= 3 and np.ptp(x) > 1e-9:
        b, a = np.polyfit(x, y, 1)
        if b > 0:
            return float(a), float(b)
    return 0.0, float((x @ y) / (x @ x))


def calibrate_table(table: LatencyTable, space, measurer: Measurer, n: int, seed: int,
                    out: str | os.PathLike | None = None) -> dict:
    """Measure ``n`` whole subnets (resumable) and fit ``measured ~ a + b * overhead-corrected sum``."""
    from facenas.utils.progress import Progress

    subnets = sample_subnets(space, n, seed + 10_000)  # a stream of its own, apart from validation seeds
    done = {_key(s) for s in (c["sample"] for c in table.calibration_networks)}
    prog = Progress(len(subnets), f"lut calibration [{table.runtime}]", unit="net", start=len(done))
    for s in subnets:
        if _key(s) in done:
            continue
        meas = measurer.measure(space.build(s), (3, *space.input_size))
        keys = [b.key for b in space.latency_blocks(s)]
        table.calibration_networks.append({"sample": s, "measured": meas, "block_sum_ms": table.block_sum(keys),
                                           "num_blocks": len(keys)})
        prog.update(1)
        if out:
            table.save(out)
    prog.close()
    stat = table.statistic
    oh = table.overhead[stat] if table.overhead else 0.0
    x = np.array([c["block_sum_ms"] - (c["num_blocks"] - 1) * oh for c in table.calibration_networks])
    y = np.array([c["measured"][stat] for c in table.calibration_networks])
    a, b = _fit(x, y)
    resid = y - (a + b * x)
    table.calibration = {"offset_ms": a, "scale": b, "num_networks": int(x.size), "seed": seed + 10_000,
                         "fit_mape": float(np.mean(np.abs(resid) / y)),
                         "uncorrected_mape": float(np.mean(np.abs(np.array([c["block_sum_ms"] for c in
                                                                            table.calibration_networks]) - y) / y))}
    log.info("calibration on %d subnets: measured = %.4f ms + %.4f x (sum - overhead); fit MAPE %.2f%%", x.size, a, b,
             100 * table.calibration["fit_mape"])
    if out:
        table.save(out)
    return table.calibration


def _key(sample: Mapping[str, Any]) -> str:
    import json

    return json.dumps(dict(sample), sort_keys=True)


# -- validation ---------------------------------------------------------------------------------------
def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def mape(pred: Sequence[float], meas: Sequence[float]) -> float:
    p, m = np.asarray(pred, dtype=np.float64), np.asarray(meas, dtype=np.float64)
    return float(np.mean(np.abs(p - m) / m))


def validate_table(table: LatencyTable, num_subnets: int = 50, seed: int = 1, warmup: int | None = None,
                   runs: int | None = None, min_time_s: float | None = None, rounds: int = 1) -> dict[str, Any]:
    """Predicted vs measured whole-network latency of ``num_subnets`` random subnets.

    Every subnet's blocks are checked against the table first (a missing key fails before any
    measuring). Networks are exported once and measured in ``rounds`` interleaved rounds (the
    per-network statistic is the median over rounds), so a burst of load on the machine does not
    hit one network's whole measurement.

    Returns:
        ``spearman`` and ``mape`` of the corrected prediction, ``raw_*`` of the plain block sum,
        ``overhead_*`` of the sum with only the per-call overhead removed, and per-subnet rows.
    """
    from facenas.utils.progress import Progress

    from .latency import device_info

    space = table.create_space()
    subnets = sample_subnets(space, num_subnets, seed)
    if len(subnets) < num_subnets:
        log.warning("space '%s' has only %d distinct networks; validating on all of them", table.space, len(subnets))
    block_lists = [[b.key for b in space.latency_blocks(s)] for s in subnets]
    missing = table.missing([k for keys in block_lists for k in keys])
    if missing:
        raise MissingKeysError(missing, table.path or "latency table")
    st = table.settings
    measurer = Measurer(table.runtime, table.threads, st.get("warmup", 20) if warmup is None else warmup,
                        st.get("runs", 100) if runs is None else runs,
                        st.get("min_time_s", 0.2) if min_time_s is None else min_time_s)
    stat = table.statistic
    prog = Progress(len(subnets), f"lut validate [{table.runtime}] export", unit="net")
    runners = []
    for s in subnets:
        runners.append(measurer.runner(space.build(s), (3, *space.input_size)))
        prog.update(1)
    prog.close()
    per_round = np.zeros((rounds, len(subnets)))
    prog = Progress(rounds * len(subnets), f"lut validate [{table.runtime}] measure", unit="net")
    for r in range(rounds):
        for i, run in enumerate(runners):
            per_round[r, i] = measurer.time(run)[stat]
            prog.update(1)
    prog.close()
    measured = np.median(per_round, axis=0)
    raw = np.array([table.block_sum(keys) for keys in block_lists])
    over = np.array([table.overhead_corrected(keys) for keys in block_lists])
    pred = np.array([table.predict_keys(keys) for keys in block_lists])
    result = {
        "space": table.space, "space_config": table.space_config, "runtime": table.runtime, "threads": table.threads,
        "statistic": stat, "num_subnets": len(subnets), "seed": seed, "rounds": rounds,
        "spearman": spearman(pred, measured), "mape": mape(pred, measured),
        "raw_spearman": spearman(raw, measured), "raw_mape": mape(raw, measured),
        "overhead_spearman": spearman(over, measured), "overhead_mape": mape(over, measured),
        "measured_ms": {"min": float(measured.min()), "median": float(np.median(measured)), "max": float(measured.max())},
        "calibration": table.calibration, "overhead": table.overhead, "table": table.path, "device": device_info(),
        "subnets": [{"sample": s, "num_blocks": len(k), "measured_ms": float(m), "predicted_ms": float(p),
                     "block_sum_ms": float(r)} for s, k, m, p, r in zip(subnets, block_lists, measured, pred, raw)],
    }
    log.info("%d subnets: Spearman %.4f, MAPE %.2f%% (plain sum: %.4f, %.2f%%; overhead-corrected: %.4f, %.2f%%)",
             len(subnets), result["spearman"], 100 * result["mape"], result["raw_spearman"], 100 * result["raw_mape"],
             result["overhead_spearman"], 100 * result["overhead_mape"])
    return result
