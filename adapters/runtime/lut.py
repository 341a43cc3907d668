"""Per-device latency lookup tables of a search space: build (resumable), predict, validate.

OFA (Cai et al. 2020, Sec. 3.4 / their ``LatencyTable``) predicts a subnet's latency as the sum of
its blocks' latencies measured once on the target device, keyed by the block's input and output
shape, kernel, expand ratio, stride, SE and activation. A space gives the blocks through
:meth:`~facenas.nas.space.SearchSpace.all_latency_blocks` (every distinct one) and
:meth:`~facenas.nas.space.SearchSpace.latency_blocks` (one sample's).

What limits a plain sum, and what the table corrects:

* **per-call overhead** -- every block measured alone pays the runtime's fixed cost of one
  inference call (binding input and output, dispatch, Python), which the whole network pays
  once. The table measures that cost on a trivial model and subtracts it from all but one block
  (``overhead``).
* **what no block sees** -- fusion and memory planning across block boundaries, cache state (a
  block measured alone runs with its weights and input hot in cache; inside a network the
  previous block evicted some), thread-pool wake-ups. These are systematic, so the table fits a
  linear correction ``measured ~ a + b * overhead_corrected_sum [+ c * weight_MB] [+ d * (blocks - 1)]``
  on ``calibrate`` whole subnets drawn with a seed of their own (``calibration``), each optional term
  kept only if it lowers the leave-one-out error; validation uses other subnets. Measured here
  (onnxruntime, 1 thread, OFA space at 64x64): a block inside a network costs ~0.01 ms more than
  alone, the opposite of the per-call overhead the plain correction removes.
* **noise** -- on a shared machine other processes inflate some runs; all latencies are medians
  of many runs after warm-up (the statistic is stored with the table), and validation repeats
  its measurements in interleaved rounds.

A table that lacks a block a sample needs raises :class:`MissingLatencyEntry` (one line: the table, the
key and the ``facenas lut build`` command that measures it). :class:`~.latency_model.LatencyModel` is
the one prediction every consumer uses (the OFA and ENAS searches, ``facenas lut predict|validate``).
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
STATISTICS = ("median_ms", "p10_ms", "p25_ms", "p90_ms", "min_ms", "mean_ms")


class MissingLatencyEntry(FacenasError, KeyError):
    """A latency table has no entry for a block a network needs (every consumer raises this one).

    One line: the table, the first missing key (``missing`` holds them all) and the fix, which
    is the ``facenas lut build`` command that measures the missing blocks (a build resumes).
    """

    def __init__(self, missing: Sequence[str], source: str, fix: str):
        self.missing, self.source, self.fix = list(dict.fromkeys(missing)), str(source), str(fix)
        more = f" (and {len(self.missing) - 1} more)" if len(self.missing) > 1 else ""
        first = self.missing[0] if self.missing else "?"
        super().__init__(f"{self.source}: no latency entry for block '{first}'{more}; {self.fix}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]

    def __reduce__(self):
        return (type(self), (self.missing, self.source, self.fix))


@dataclasses.dataclass
class BuildConfig(TypedConfig):
    """Settings of ``facenas lut build``.

    Args:
        space: registered space name; ``space_config`` its constructor kwargs.
        runtime: ``onnxruntime``, ``tflite`` or ``torch``; ``threads`` its intra-op threads.
        warmup, runs, min_time_s: per timing (see :func:`~.latency.time_runner`).
        rounds: every block is timed in this many interleaved rounds; its statistics are the
            medians over rounds (a burst of load hits one round of many blocks, not one block).
        clock: ``cpu`` (thread CPU time: the idle-device latency of a 1-thread runtime, immune to
            preemption on a shared machine), ``wall``, or ``auto`` (``cpu`` for 1 thread).
        calibrate: whole subnets measured to fit the correction (0: none).
        seed: seed of the calibration subnets.
        statistic: which per-timing statistic the table predicts.
    """

    space: str = "toy"
    space_config: dict = dataclasses.field(default_factory=dict)
    runtime: str = "onnxruntime"
    threads: int = 1
    warmup: int = 10
    runs: int = 50
    min_time_s: float = 0.05
    rounds: int = 5
    clock: str = "auto"
    calibrate: int = 10
    seed: int = 0
    statistic: str = "p10_ms"

    def resolved_clock(self) -> str:
        return resolve_clock(self.clock, self.threads)


def resolve_clock(clock: str, threads: int) -> str:
    from .latency import CLOCKS

    if clock == "auto":
        return "cpu" if threads == 1 else "wall"
    if clock not in CLOCKS:
        raise ConfigError(f"clock '{clock}' is not one of {['auto', *CLOCKS]}")
    if clock == "cpu" and threads != 1:
        raise ConfigError("clock 'cpu' measures the calling thread only; use it with threads=1 (or clock 'wall')")
    return clock


def aggregate(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median over rounds of every statistic; with probe timings also ``rel``: the median ratio to the probe."""
    out: dict[str, Any] = {s: float(np.median([r[s] for r in rounds])) for s in STATISTICS}
    if rounds and all("probe" in r for r in rounds):
        out["rel"] = {s: float(np.median([r[s] / r["probe"][s] for r in rounds])) for s in STATISTICS}
    return out


# -- measuring modules in a runtime -------------------------------------------------------------------
class Measurer:
    """Batch-1 latency of torch modules in one runtime (export happens here, untimed)."""

    def __init__(self, runtime: str, threads: int = 1, warmup: int = 10, runs: int = 50, min_time_s: float = 0.05,
                 clock: str = "wall"):
        from .latency import RUNTIMES

        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime '{runtime}' is not one of {list(RUNTIMES)}")
        self.runtime, self.threads = runtime, int(threads)
        self.warmup, self.runs, self.min_time_s = int(warmup), int(runs), float(min_time_s)
        self.clock = resolve_clock(clock, self.threads)

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
        """One timing of ``runner``: order statistics (ms) of its per-call times."""
        from .latency import time_runner, torch_threads

        ctx = torch_threads(self.threads) if self.runtime == "torch" else contextlib.nullcontext()
        with ctx:
            t = time_runner(runner, self.warmup, self.runs, self.min_time_s, self.clock) * 1e3
        return {"median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)),
                "p25_ms": float(np.percentile(t, 25)), "p90_ms": float(np.percentile(t, 90)), "min_ms": float(t.min()),
                "mean_ms": float(t.mean()), "runs": int(t.size)}

    def measure(self, module, input_shape: tuple[int, ...], rounds: int = 1) -> dict[str, float]:
        run = self.runner(module, input_shape)
        return aggregate([self.time(run) for _ in range(rounds)])


def measure_interleaved(measurer: Measurer, items: Sequence[tuple[str, Any, tuple[int, ...]]],
                        records: dict[str, dict], rounds: int, desc: str, on_round=None, probe_runner=None,
                        probe_timings: list | None = None, probe_every: int = 8) -> None:
    """Time every item ``rounds`` times, round-robin, appending to ``records[name]["rounds"]`` (resumable).

    Args:
        items: ``(name, build, input_shape)``; ``build()`` makes the module (exported once).
        records: per name, a dict whose ``rounds`` list is extended; its statistics are updated
            to the medians over rounds after every timing.
        on_round: called after each timing (e.g. to save progress).
        probe_runner: a fixed reference model timed every ``probe_every`` timings (appended to
            ``probe_timings``); each timing stores the latest probe timing under ``probe``, so a
            latency can be expressed relative to the machine's speed at that moment.
    """
    from facenas.utils.progress import Progress

    pending = [it for it in items if len(records.get(it[0], {}).get("rounds", [])) < rounds]
    if not pending:
        return
    prog = Progress(len(pending), f"{desc}: export", unit="model")
    runners = {}
    for name, build, shape in pending:
        module = build()
        rec = records.setdefault(name, {"input_shape": list(shape), "rounds": []})
        rec["weight_mb"] = sum(p.numel() for p in module.parameters()) * 4 / 1e6  # float32 weights it must stream
        runners[name] = measurer.runner(module, shape)
        prog.update(1)
    total = sum(rounds - len(records.get(n, {}).get("rounds", [])) for n, _, _ in pending)
    prog = Progress(total, f"{desc}: measure", unit="timing")
    probe, count = None, 0
    for r in range(rounds):
        for name, _, shape in pending:
            rec = records.setdefault(name, {"input_shape": list(shape), "rounds": []})
            if len(rec["rounds"]) > r:
                continue
            if probe_runner is not None and count % probe_every == 0:
                probe = {k: v for k, v in measurer.time(probe_runner).items() if k in STATISTICS}
                if probe_timings is not None:
                    probe_timings.append(probe)
            timing = measurer.time(runners[name])
            if probe is not None:
                timing["probe"] = probe
            rec["rounds"].append(timing)
            rec.update(aggregate(rec["rounds"]))
            count += 1
            prog.update(1)
            if on_round is not None:
                on_round()
    prog.close()


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
    probe: dict | None = None
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
        from facenas.nas.space import create_space

        return create_space(self.space, **self.space_config)

    def block_keys(self, sample: Mapping[str, Any], space=None) -> list[str]:
        space = space or self.create_space()
        return [b.key for b in space.latency_blocks(space.validate(sample))]

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.entries]

    @property
    def source(self) -> str:
        """The table's file, or what it is when it has none (an in-line table)."""
        return self.path or f"in-line latency table of space '{self.space}'"

    def rebuild_hint(self) -> str:
        """How to get a table that has every block of this table's space (the fix of a missing entry)."""
        import json

        config = json.dumps(self.space_config, sort_keys=True, separators=(", ", ": "))
        if self.path is None or self.runtime not in ("onnxruntime", "tflite", "torch"):
            return (f"add the key to the in-line table, or build a table with `facenas lut build --space {self.space} "
                    f"--space-config '{config}' --out FILE` and pass {{\"lut\": FILE}}")
        return (f"rebuild the table with `facenas lut build --space {self.space} --space-config '{config}' --runtime "
                f"{self.runtime} --threads {self.threads} --out {self.path}` so it covers that op (the build resumes "
                "and measures only the missing blocks)")

    def check_keys(self, keys: Sequence[str]) -> None:
        """Raise :class:`MissingLatencyEntry` when any of ``keys`` has no entry."""
        missing = self.missing(keys)
        if missing:
            raise MissingLatencyEntry(missing, self.source, self.rebuild_hint())

    @property
    def unit_ms(self) -> float | None:
        """The probe network's latency during the build (the machine's speed the table is expressed at)."""
        return self.probe[self.statistic] if self.probe else None

    def latency_of(self, record: Mapping[str, Any], statistic: str | None = None) -> float:
        """A record's latency (ms) at the build's machine speed: its probe ratio x the probe's
        build-time latency, or its plain statistic when it was timed without a probe."""
        stat = statistic or self.statistic
        if self.probe and "rel" in record:
            return record["rel"][stat] * self.probe[stat]
        return record[stat]

    def block_sum(self, keys: Sequence[str]) -> float:
        self.check_keys(keys)
        return float(sum(self.latency_of(self.entries[k]) for k in keys))

    def overhead_corrected(self, keys: Sequence[str]) -> float:
        """Sum of blocks minus the per-call overhead of all but one block."""
        total = self.block_sum(keys)
        if self.overhead:
            total -= (len(keys) - 1) * self.latency_of(self.overhead)
        return total

    def weight_mb(self, keys: Sequence[str]) -> float | None:
        """Float32 weight megabytes of the blocks (``None`` if the table did not record them)."""
        if any("weight_mb" not in self.entries[k] for k in keys):
            return None
        return float(sum(self.entries[k]["weight_mb"] for k in keys))

    def predict_keys(self, keys: Sequence[str], corrected: bool = True) -> float:
        if not corrected:
            return self.block_sum(keys)
        x = self.overhead_corrected(keys)
        cal = self.calibration
        if cal:
            y = cal["offset_ms"] + cal["scale"] * x
            if cal.get("per_weight_mb_ms"):
                y += cal["per_weight_mb_ms"] * self.weight_mb(keys)
            if cal.get("per_block_ms"):
                y += cal["per_block_ms"] * (len(keys) - 1)
            x = y
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
    from facenas.nas.space import create_space

    from .latency import device_info

    if cfg.statistic not in STATISTICS:
        raise ConfigError(f"statistic '{cfg.statistic}' is not one of {list(STATISTICS)}")
    space = create_space(cfg.space, **cfg.space_config)
    clock = cfg.resolved_clock()
    settings = {"warmup": cfg.warmup, "runs": cfg.runs, "min_time_s": cfg.min_time_s, "rounds": cfg.rounds,
                "clock": clock, "statistic": cfg.statistic, "batch": 1}
    device = device_info()
    if os.path.isfile(out):
        table = LatencyTable.load(out)
        for name, have, want in (("space", table.space, cfg.space), ("space_config", table.space_config, space.config()),
                                 ("runtime", table.runtime, cfg.runtime), ("threads", table.threads, cfg.threads),
                                 ("clock", table.settings.get("clock"), clock),
                                 ("statistic", table.settings.get("statistic"), cfg.statistic)):
            if not _same(have, want):
                raise ConfigError(f"{out} was built with {name}={have!r}, not {want!r}; give another --out "
                                  "or delete it to start over")
        if table.device.get("cpu") != device["cpu"]:
            log.warning("%s was started on '%s'; this machine is '%s'", out, table.device.get("cpu"), device["cpu"])
        log.info("resuming %s: %d entries measured", out, len(table.entries))
        table.settings.update(settings)
    else:
        table = LatencyTable(cfg.space, space.config(), cfg.runtime, cfg.threads, device, settings)
        table.path = os.fspath(out)
    measurer = Measurer(cfg.runtime, cfg.threads, cfg.warmup, cfg.runs, cfg.min_time_s, clock)
    blocks = space.all_latency_blocks()
    last_save = [time.monotonic()]

    def maybe_save() -> None:
        if time.monotonic() - last_save[0] > save_every_s:
            table.save(out)
            last_save[0] = time.monotonic()

    # the per-call overhead is timed as one more item of the same rounds, so it sees the same load
    records = dict(table.entries)
    if table.overhead is not None:
        records[_OVERHEAD] = table.overhead
    items = [(_OVERHEAD, _trivial_module, (1, 1, 1))] + [(b.key, b.build, tuple(b.input_shape)) for b in blocks]

    # a fixed reference network (the space's largest) timed every few items: latencies are stored
    # relative to it too, so the table is expressed at one machine speed even if the speed drifts
    probe_sample = space.validate(table.probe["sample"]) if table.probe else space.largest()
    probe_timings: list = list(table.probe["timings"]) if table.probe else []
    probe_runner = None
    if any(len(records.get(k, {}).get("rounds", [])) < cfg.rounds for k, _, _ in items):
        probe_runner = measurer.runner(space.build(probe_sample), (3, *space.input_size))

    def sync() -> None:
        if probe_timings:
            table.probe = {"sample": probe_sample, "timings": probe_timings, **aggregate(probe_timings)}
        table.overhead = records.get(_OVERHEAD)
        table.entries = {k: v for k, v in records.items() if k != _OVERHEAD}
        maybe_save()

    measure_interleaved(measurer, items, records, cfg.rounds, f"lut {cfg.space} [{cfg.runtime}]", sync,
                        probe_runner, probe_timings)
    sync()
    table.save(out)
    log.info("per-call overhead of %s (%d thread(s), %s clock): %.4f ms; probe (largest subnet): %.4f ms", cfg.runtime,
             cfg.threads, clock, table.latency_of(table.overhead), table.unit_ms or float("nan"))
    if cfg.calibrate > 0:
        calibrate_table(table, space, measurer, cfg.calibrate, cfg.seed, cfg.rounds, out,
                        probe_runner=probe_runner)
    return table


_OVERHEAD = "__overhead__"


def _trivial_module():
    """ReLU of one value: its latency is the runtime's fixed cost of one inference call."""
    from torch import nn

    return nn.ReLU()


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


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
         n: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """Fit ``y ~ a + b x [+ c w] [+ d n]``; returns ``(a, b, c, d)`` (absent terms are 0).

    ``x`` is the overhead-corrected block sum, ``w`` the weight megabytes, ``n`` the number of block
    boundaries (blocks - 1). Each optional term is kept only when it lowers the leave-one-out error
    (on 10-20 noisy networks a term can fit noise and reorder subnets the block sum ranks right),
    and only in its physical direction for the weights (``c >= 0``); ``d`` may take either sign: a
    block inside a network can cost more than alone (cold caches) or less (fused boundaries).
    ``b`` must be positive; ``y ~ b x`` when ``x`` barely varies.
    """
    if x.size >= 3 and np.ptp(x) > 1e-9:
        cols = {"w": w, "n": n}
        best, best_err = None, np.inf
        for use in ([], ["w"], ["n"], ["w", "n"]):
            if any(cols[k] is None or np.ptp(cols[k]) < 1e-12 for k in use) or x.size < 3 * (1 + len(use)):
                continue
            design = np.c_[np.ones_like(x), x, *[cols[k] for k in use]]
            coef, *_ = np.linalg.lstsq(design, y, rcond=None)
            terms = dict(zip(use, coef[2:]))
            if coef[1] <= 0 or terms.get("w", 0.0) < 0:
                continue
            err = _loo_error(design, y)
            if err < best_err * (0.95 if best is not None else 1.0):  # a term must earn a 5% lower error
                best, best_err = (float(coef[0]), float(coef[1]), float(terms.get("w", 0.0)), float(terms.get("n", 0.0))), err
        if best is not None:
            return best
    return 0.0, float((x @ y) / (x @ x)), 0.0, 0.0


def _loo_error(design: np.ndarray, y: np.ndarray) -> float:
    """Mean relative leave-one-out error of the least-squares fit ``y ~ design``."""
    errs = []
    for i in range(y.size):
        keep = np.arange(y.size) != i
        coef, *_ = np.linalg.lstsq(design[keep], y[keep], rcond=None)
        errs.append(abs(design[i] @ coef - y[i]) / y[i])
    return float(np.mean(errs))


def calibrate_table(table: LatencyTable, space, measurer: Measurer, n: int, seed: int, rounds: int = 5,
                    out: str | os.PathLike | None = None, probe_runner=None) -> dict:
    """Measure ``n`` whole subnets (resumable) and fit ``measured ~ a + b * overhead-corrected sum``."""
    subnets = sample_subnets(space, n, seed + 10_000)  # a stream of its own, apart from validation seeds
    records = {_key(c["sample"]): c for c in table.calibration_networks}
    for s in subnets:
        keys = [b.key for b in space.latency_blocks(s)]
        rec = records.setdefault(_key(s), {"sample": s, "input_shape": [3, *space.input_size], "rounds": []})
        rec.update(block_sum_ms=table.block_sum(keys), num_blocks=len(keys))
    items = [(_key(s), (lambda s=s: space.build(s)), (3, *space.input_size)) for s in subnets]

    def sync() -> None:
        table.calibration_networks = list(records.values())
        if out:
            table.save(out)

    if table.probe and probe_runner is None and any(len(records[k]["rounds"]) < rounds for k, _, _ in items):
        probe_runner = measurer.runner(space.build(space.validate(table.probe["sample"])), (3, *space.input_size))
    measure_interleaved(measurer, items, records, rounds, f"lut calibration [{table.runtime}]", sync,
                        probe_runner if table.probe else None)
    sync()
    nets = [records[_key(s)] for s in subnets]
    oh = table.latency_of(table.overhead) if table.overhead else 0.0
    x = np.array([c["block_sum_ms"] - (c["num_blocks"] - 1) * oh for c in nets])
    y = np.array([table.latency_of(c) for c in nets])
    mbs = [table.weight_mb([blk.key for blk in space.latency_blocks(net["sample"])]) for net in nets]
    w = None if any(m is None for m in mbs) else np.array(mbs)
    n_bound = np.array([c["num_blocks"] - 1 for c in nets], dtype=float)
    a, b, per_mb, per_block = _fit(x, y, w, n_bound)
    resid = y - (a + b * x + (per_mb * w if w is not None else 0.0) + per_block * n_bound)
    raw = np.array([net["block_sum_ms"] for net in nets])
    table.calibration = {"offset_ms": a, "scale": b, "per_weight_mb_ms": per_mb, "per_block_ms": per_block,
                         "num_networks": int(x.size),
                         "seed": seed + 10_000, "fit_mape": float(np.mean(np.abs(resid) / y)),
                         "uncorrected_mape": float(np.mean(np.abs(raw - y) / y))}
    log.info("calibration on %d subnets: measured = %.4f ms + %.4f x (sum - overhead) + %.4f ms/MB x weights "
             "+ %.4f ms x (blocks - 1); fit MAPE %.2f%%", x.size, a, b, per_mb, per_block, 100 * table.calibration["fit_mape"])
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
                   runs: int | None = None, min_time_s: float | None = None, rounds: int | None = None) -> dict[str, Any]:
    """Predicted vs measured whole-network latency of ``num_subnets`` random subnets.

    Predictions are :class:`~.latency_model.LatencyModel`'s; the table must hold every block of
    its space (a missing entry fails before any measuring). Networks are exported once and timed in ``rounds`` interleaved rounds (default:
    the table's) with the table's clock and statistic (medians over rounds), as the blocks were.

    Returns:
        ``spearman``, ``mape`` and ``within_10pct`` (the share of subnets predicted within +-10%) of
        the corrected prediction, ``raw_*`` of the plain block sum,
        ``overhead_*`` of the sum with only the per-call overhead removed, and per-subnet rows.
    """
    from .latency import device_info

    space = table.create_space()
    subnets = sample_subnets(space, num_subnets, seed)
    if len(subnets) < num_subnets:
        log.warning("space '%s' has only %d distinct networks; validating on all of them", table.space, len(subnets))
    from .latency_model import LatencyModel

    model = LatencyModel(table, space)  # every block the space has must be in the table: fails before measuring
    block_lists = [model.keys(s) for s in subnets]
    st = table.settings
    measurer = Measurer(table.runtime, table.threads, st.get("warmup", 10) if warmup is None else warmup,
                        st.get("runs", 50) if runs is None else runs,
                        st.get("min_time_s", 0.05) if min_time_s is None else min_time_s, st.get("clock", "wall"))
    rounds = int(st.get("rounds", 5) if rounds is None else rounds)
    stat = table.statistic
    records: dict[str, dict] = {}
    names = [f"subnet{i}" for i in range(len(subnets))]
    items = [(n, (lambda s=s: space.build(s)), (3, *space.input_size)) for n, s in zip(names, subnets)]
    probe_runner, probe_timings = None, []
    if table.probe:
        probe_runner = measurer.runner(space.build(space.validate(table.probe["sample"])), (3, *space.input_size))
    measure_interleaved(measurer, items, records, rounds, f"lut validate [{table.runtime}]", None, probe_runner,
                        probe_timings)
    # measured latency at the table's machine speed (probe ratio x the probe's build-time latency) and as timed
    measured_all = {s: np.array([table.latency_of(records[n], s) for n in names]) for s in STATISTICS}
    measured = measured_all[stat]
    absolute = np.array([records[n][stat] for n in names])
    speed_ratio = float(np.median([p[stat] for p in probe_timings]) / table.unit_ms) if probe_timings else None
    raw = np.array([table.block_sum(keys) for keys in block_lists])
    over = np.array([table.overhead_corrected(keys) for keys in block_lists])
    pred = np.array([model.predict_keys(keys) for keys in block_lists])
    # the other statistics (uncalibrated), to show how the choice of statistic matters on a busy machine
    by_statistic = {}
    for s in STATISTICS:
        sums = np.array([sum(table.latency_of(table.entries[k], s) for k in keys) for keys in block_lists])
        oh = table.latency_of(table.overhead, s) if table.overhead else 0.0
        corr = sums - oh * np.array([len(k) - 1 for k in block_lists])
        by_statistic[s] = {"raw_spearman": spearman(sums, measured_all[s]), "raw_mape": mape(sums, measured_all[s]),
                           "overhead_spearman": spearman(corr, measured_all[s]),
                           "overhead_mape": mape(corr, measured_all[s])}
    # the measurement's own repeatability: the same networks' latencies from the even vs the odd rounds
    # (no prediction can rank the subnets more consistently than the measurement ranks them twice)
    retest = None
    if rounds >= 2:
        halves = [np.array([float(np.median([t[stat] for t in records[n]["rounds"][h::2]])) for n in names])
                  for h in (0, 1)]
        retest = spearman(*halves)
    result = {
        "space": table.space, "space_config": table.space_config, "runtime": table.runtime, "threads": table.threads,
        "measurement_retest_spearman": retest,
        "statistic": stat, "clock": measurer.clock, "num_subnets": len(subnets), "seed": seed, "rounds": rounds,
        "spearman": spearman(pred, measured), "mape": mape(pred, measured),
        "within_10pct": float(np.mean(np.abs(pred - measured) / measured <= 0.10)),  # nn-Meter's accuracy figure
        "raw_spearman": spearman(raw, measured), "raw_mape": mape(raw, measured),
        "overhead_spearman": spearman(over, measured), "overhead_mape": mape(over, measured),
        "absolute_spearman": spearman(pred, absolute), "absolute_mape": mape(pred, absolute),
        "speed_ratio": speed_ratio, "probe_ms_at_build": table.unit_ms,
        "by_statistic": by_statistic,
        "measured_ms": {"min": float(measured.min()), "median": float(np.median(measured)), "max": float(measured.max())},
        "calibration": table.calibration, "overhead": table.overhead, "table": table.path, "device": device_info(),
        "subnets": [{"sample": s, "num_blocks": len(k), "measured_ms": float(m), "measured_absolute_ms": float(a),
                     "predicted_ms": float(p), "block_sum_ms": float(r)}
                    for s, k, m, a, p, r in zip(subnets, block_lists, measured, absolute, pred, raw)],
    }
    log.info("%d subnets: Spearman %.4f, MAPE %.2f%% (plain sum: %.4f, %.2f%%; overhead-corrected: %.4f, %.2f%%; "
             "absolute ms without the speed probe: %.4f, %.2f%%; machine speed ratio now/build %s; "
             "measured twice (even vs odd rounds) the subnets rank with Spearman %s)",
             len(subnets), result["spearman"], 100 * result["mape"], result["raw_spearman"], 100 * result["raw_mape"],
             result["overhead_spearman"], 100 * result["overhead_mape"], result["absolute_spearman"],
             100 * result["absolute_mape"], f"{speed_ratio:.3f}" if speed_ratio else "n/a",
             f"{retest:.4f}" if retest is not None else "n/a")
    return result
