"""Publish the networks of the README's headline table: ONNX files and ``manifest.json``.

    python -m benchmarks.publish_models --run reference_front_cpu=RUN_DIR [--verify-bin lfw.bin]
    python -m benchmarks.publish_models --refresh   # the entries' record-derived fields only, no export

The rows are listed in ``benchmarks/published_models.yml``: each names a pipeline run recorded by
``benchmarks.collect_pipeline`` (``benchmarks/results/<record>.json``), the step that trained the network
and, where that step trained several (a ``foreach`` over FLOPs targets x seeds, ENAS's top arcs), which one:
``headline_name``, the name :mod:`benchmarks.seed_rows` groups the network's seed runs under. A row is
resolved through seed_rows only (:func:`find`: ``pipeline_rows`` of the record's source in
``ROW_SOURCES``, grouped by ``networks``): the training trial of its primary seed and the ``runtime.latency``
trial that timed that trial's checkpoint, alone (``model``) or among several (``models``). The published
weights are that checkpoint (the step's ``last.pt``: the final weights, which are also the ones the training
evaluated for its recorded ``lfw_acc``; ``best.pt``'s figures are ``best_lfw_*``). ``--run RECORD=DIR`` says
where that run's folder is on this machine (the record writes it as ``$RUN_DIR``); a published row of a
record whose folder is not given keeps its file and entry (checked as ``--refresh`` checks them), so
publishing one new run needs only that run's folder.

Each network is exported with the project's exporter (``export_onnx``: InsightFace's 112x112
aligned-face input, the data layer's resize in front of a network trained at 64x64, the graph
passes the latency step timed for onnxruntime, and the torch-vs-onnxruntime parity check), and
``benchmarks/results/models/manifest.json`` gets one entry per file: accuracy, its fold std, seed,
MFLOPs and params from the train trial, latency from the latency trial -- every number read from the
record, none typed in -- with the file's sha256. ``--verify-bin`` also runs ``facenas eval`` on each
file and refuses to publish one that does not reproduce the recorded ``lfw_acc`` to 1e-3.
Rows whose record, step or network is not recorded yet are left out with a log line (the manifest lists what
exists), and so is a searched network whose ``compare_with`` reference is not recorded yet.

Seeds: a record may hold several seed runs of its experiment file (``benchmarks.collect_pipeline``), and a
step may train one network over several seeds (a ``foreach`` over seeds); the published file is the network
of the record's primary run (its ``trials``), its first seed there, and its entry's ``seeds`` gives the
network over every recorded seed (seed_rows' ``Network``: ``metric``, ``n``, ``seeds``, ``values``, ``mean``,
sample ``std`` -- null for one seed -- and ``latency_ms_median``). ``--refresh`` rewrites the record-derived
fields of the entries already published (seeds, role, target runtime, compare_with, budget, device, where in
the record they come from) without exporting again, after checking that each file's sha256 is the manifest's
and that the record's primary run still holds the entry's network.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks._common import RESULTS_DIR
from benchmarks.seed_rows import ROW_SOURCES, Network, RowSource, SeedRow, networks, pipeline_rows, row_trials
from facenas.errors import ConfigError, FacenasError

log = logging.getLogger(__name__)

ROWS_FILE = Path(__file__).resolve().parent / "published_models.yml"
MODELS_DIR = RESULTS_DIR / "models"
MANIFEST = "manifest.json"
#: the largest file published (issue 16: each <= 10 MB)
MAX_BYTES = 10_000_000
ROLES = ("reference", "searched")
TARGET_RUNTIMES = ("onnxruntime", "tflite")
LATENCY_RUNTIMES = ("onnxruntime", "tflite")
#: how close ``facenas eval`` on the file must come to the recorded accuracy (issue 16, item 7)
ACC_TOLERANCE = 1e-3
#: the checkpoint whose accuracy ``engine.train`` records as ``lfw_acc`` (best.pt's is ``best_lfw_acc``)
FINAL_WEIGHTS = "last.pt"
RUN_DIR = "$RUN_DIR"


@dataclasses.dataclass(frozen=True)
class Row:
    """One published network, as ``published_models.yml`` lists it."""

    file: str  # the ONNX file's name under benchmarks/results/models/
    record: str  # benchmarks/results/<record>.json (benchmarks.collect_pipeline)
    step: str  # the record's step that trained it (engine.train, ofa.finetune, tnas.train, enas.retrain)
    network: str  # a readable name
    method: str  # hand-designed | the search method (ofa, tnas, enas)
    role: str  # reference | searched
    target_runtime: str | None  # the runtime a searched network was searched for
    compare_with: str | None  # the reference's file a searched network is compared with
    #: the network of ``step`` it publishes, by the name benchmarks.seed_rows groups its seed runs under (the
    #: headline's name: ``student ratio 0.5``, ``top1``); None: the step's only network
    headline_name: str | None = None


def load_rows(path: Path = ROWS_FILE) -> list[Row]:
    """The rows of ``path``, checked: known fields, role / target_runtime values, unique files."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    items = data.get("models") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a mapping with a 'models' list")
    fields = {f.name for f in dataclasses.fields(Row)}
    required = {f.name for f in dataclasses.fields(Row) if f.default is dataclasses.MISSING}
    rows = []
    for i, item in enumerate(items):
        where = f"{path}: models[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with fields {sorted(fields)}")
        unknown, missing = sorted(set(item) - fields), sorted(required - set(item))
        if unknown or missing:
            raise ConfigError(f"{where}: unknown field(s) {unknown}, missing {missing}; the fields are {sorted(fields)}")
        row = Row(**item)
        if row.role not in ROLES:
            raise ConfigError(f"{where}: role {row.role!r} must be one of {list(ROLES)}")
        if row.target_runtime not in (None, *TARGET_RUNTIMES):
            raise ConfigError(f"{where}: target_runtime {row.target_runtime!r} must be null or one of {list(TARGET_RUNTIMES)}")
        if not str(row.file).endswith(".onnx") or "/" in str(row.file):
            raise ConfigError(f"{where}: file {row.file!r} must be a plain name ending in .onnx")
        if row.headline_name is not None and not (isinstance(row.headline_name, str) and row.headline_name):
            raise ConfigError(f"{where}: headline_name {row.headline_name!r} must be a network's name (e.g. 'top1') "
                              "or null for a step that trained one network")
        rows.append(row)
    files = [r.file for r in rows]
    dup = sorted({f for f in files if files.count(f) > 1})
    if dup:
        raise ConfigError(f"{path}: file(s) {dup} listed more than once; give each row its own file name")
    for r in rows:
        if r.compare_with is not None and r.compare_with not in files:
            raise ConfigError(f"{path}: {r.file} compare_with {r.compare_with!r} is not a file of another row "
                              f"(files: {files})")
    return rows


def load_record(results: Path, name: str) -> dict[str, Any] | None:
    """``benchmarks/results/<name>.json`` as collect_pipeline wrote it (the ``result`` part); None when the run
    is not recorded (yet)."""
    path = results / f"{name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data.get("result"), dict) or "trials" not in data["result"]:
        raise FacenasError(f"{path} is not a pipeline record (no result.trials): it was not written by "
                           "benchmarks.collect_pipeline")
    return data["result"]


@dataclasses.dataclass(frozen=True)
class Found:
    """A row's network in its record, as benchmarks.seed_rows reads it: the file is its primary seed's."""

    network: Network  # the network over every recorded seed run (benchmarks.seed_rows.networks)
    primary: SeedRow  # its row of the record's primary run: the published file's
    train: Mapping[str, Any]  # the trial that trained it
    latency: Mapping[str, Any]  # the runtime.latency trial that timed it
    done: list[Mapping[str, Any]]  # the succeeded trials of the primary run
    source: RowSource  # how benchmarks.seed_rows reads its record

    @property
    def model(self) -> str | None:
        """Its name in the latency trial's ``models`` (None: the trial timed it alone, ``model``)."""
        return (self.primary.timed_by or ("", None, None))[2]

    @property
    def checkpoint(self) -> str:
        """The checkpoint the latency trial timed, as recorded (``$RUN_DIR/...``)."""
        p = self.latency.get("params") or {}
        return str(p["model"] if self.model is None else p["models"][self.model])


def _source(row: Row, sources: Sequence[RowSource]) -> RowSource:
    """The row's record's source (benchmarks.seed_rows.ROW_SOURCES); a record no source lists (a test-scale or
    other run) is read with the row's role for every trial of its step."""
    by_record = {s.record: s for s in sources}
    if row.record in by_record:
        return by_record[row.record]
    return RowSource(row.record, row.method, role=row.role, steps=(row.step,),
                     target_runtime={row.step: row.target_runtime} if row.target_runtime else {})


def find(record: Mapping[str, Any], row: Row, sources: Sequence[RowSource] = ROW_SOURCES) -> Found | None:
    """The row's network (benchmarks.seed_rows: its rows over seed runs, grouped by ``networks``), the trial of
    the record's primary run that trained it and the runtime.latency trial that timed it; None when not recorded
    (yet). A row naming a network that the record's source reads with another role or method is refused."""
    source = _source(row, sources)
    nets = [n for n in networks(pipeline_rows(row.record, record, source)) if any(r.step == row.step for r in n.rows)]
    if row.headline_name is None:
        if len(nets) > 1:
            raise ConfigError(f"{row.file}: step {row.step} of {row.record} trained {len(nets)} networks "
                              f"({[n.name for n in nets]}): name one with headline_name")
        net = nets[0] if nets else None
    else:
        net = next((n for n in nets if n.name == row.headline_name), None)
        if net is None and nets:
            log.info("%s: step %s of %s has networks %s, not (yet) %r", row.file, row.step, row.record,
                     [n.name for n in nets], row.headline_name)
    if net is None:
        return None
    if (net.method, net.role, net.target_runtime) != (row.method, row.role, row.target_runtime):
        raise ConfigError(f"{row.file}: {row.record} network {net.name!r} is method {net.method}, role {net.role}, "
                          f"target runtime {net.target_runtime} (benchmarks.seed_rows); the rows file says "
                          f"{row.method}, {row.role}, {row.target_runtime}: make them agree")
    primary = next((r for r in net.rows if r.run == 0), None)
    if primary is None or primary.timed_by is None:
        return None
    train, latency, done = row_trials(record, primary)
    if latency is None:
        return None
    return Found(net, primary, train, latency, done, source)


def _checkpoint(found: Found, row: Row, run_dirs: Mapping[str, Path]) -> tuple[str, Path]:
    """The recorded checkpoint path (``$RUN_DIR/...``) and where it is on this machine."""
    recorded = found.checkpoint
    if Path(recorded).name != FINAL_WEIGHTS:
        raise FacenasError(f"{row.record} step {found.latency.get('step')} timed {recorded}; the recorded lfw_acc is of "
                           f"the final weights ({FINAL_WEIGHTS}), so the published file would not match it")
    if row.record not in run_dirs:
        raise FacenasError(f"{row.file} comes from the run recorded as {row.record}: give its folder with "
                           f"--run {row.record}=RUN_DIR")
    path = run_dirs[row.record] / recorded[len(RUN_DIR) + 1:]
    if not path.is_file():
        raise FacenasError(f"{path} does not exist: --run {row.record}= must be the folder the record was made from")
    return recorded, path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _budget(train: Mapping[str, Any]) -> str:
    """The training budget as the record states it (epochs, recipe, where)."""
    m, p = train.get("metrics") or {}, train.get("params") or {}
    epochs = m.get("epochs")
    where = f"{p['threads']} CPU thread(s)" if p.get("threads") else "its recipe's device"
    return f"{epochs:g} epochs of {p.get('config')} on {where}" if isinstance(epochs, (int, float)) else str(p.get("config"))


def _seeds(found: Found) -> dict[str, Any]:
    """The network over every seed run of its record (benchmarks.seed_rows.networks): the accuracy read, count,
    seeds, values, mean, sample std, and the median latency over the seed runs' timings."""
    net = found.network
    return {"metric": found.source.metric, "n": net.accuracy.n, "seeds": net.seeds,
            "values": list(net.accuracy.values), "mean": net.accuracy.mean, "std": net.accuracy.std,
            "latency_ms_median": dict(net.latency_ms)}


def _device(train: Mapping[str, Any], latency: Mapping[str, Any]) -> dict[str, Any]:
    """Where the network was trained (host, threads) and timed (CPU), as the record states."""
    p, device = train.get("params") or {}, (latency.get("metrics") or {}).get("device")
    return {"train_host": train.get("host"), "train_threads": p.get("threads"),
            "latency_cpu": device.get("cpu") if isinstance(device, dict) else device}


def _record_fields(row: Row, found: Found) -> dict[str, Any]:
    """The entry's fields read from the rows file and the record (no file needed)."""
    train, latency, primary = found.train, found.latency, found.primary
    m = train.get("metrics") or {}
    stated = found.source.budget(train, found.done) if found.source.budget else None
    return {"file": row.file, "network": row.network, "method": row.method, "role": row.role,
            "target_runtime": row.target_runtime, "seed": primary.seed,
            "lfw_acc": m.get("lfw_acc"), "lfw_acc_std": m.get("lfw_acc_std"), "seeds": _seeds(found),
            "latency_ms": {rt: primary.latency_ms.get(rt) for rt in LATENCY_RUNTIMES},
            "mflops": m.get("mflops"), "params_m": m.get("params_m"), "compare_with": row.compare_with,
            "budget": stated or _budget(train), "device": _device(train, latency)}


def _source_fields(row: Row, found: Found) -> dict[str, Any]:
    """Where in the record the entry's numbers come from (the record-derived part of its ``source``)."""
    step, index, model = found.primary.timed_by or (None, None, None)
    return {"record": f"benchmarks/results/{row.record}.json", "step": row.step, "index": found.primary.index,
            "headline_name": found.network.name, "latency_step": step, "latency_index": index,
            "latency_model": model}


def _export(row: Row, checkpoint: Path, train: Mapping[str, Any], latency: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out`` (parity checked) after checking it is the recorded network."""
    import onnx

    from facenas.adapters.runtime.export_checks import ExportThresholds, check_export, raise_on_failures
    from facenas.adapters.runtime.models import load_model
    from facenas.adapters.runtime.onnx_export import export_onnx
    from facenas.nas.flops import count_flops, count_params

    loaded = load_model(checkpoint)
    module, native = loaded.module.eval(), tuple(loaded.input_size)
    m = train.get("metrics") or {}
    meta = (getattr(module, "facenas_checkpoint", None) or {}).get("meta") or {}
    mflops = count_flops(module, (1, 3, *native)) / 1e6
    params_m = count_params(module) / 1e6
    # the file must be the weights the record describes: same network size, same final step
    checks = {"mflops": (mflops, m.get("mflops")), "params_m": (params_m, m.get("params_m")),
              "global_step": (meta.get("global_step"), m.get("global_step"))}
    for name, (have, recorded) in checks.items():
        if recorded is not None and (have is None or abs(float(have) - float(recorded)) > 1e-6 * max(1.0, abs(recorded))):
            raise FacenasError(f"{checkpoint}: {name} {have} differs from the record's {recorded} "
                               f"({row.record} step {row.step}): this is not the recorded network")
    passes = ((latency.get("metrics") or {}).get("passes") or {}).get("onnxruntime")
    report = export_onnx(module, out, (112, 112), native_size=native, check=True,
                         passes=tuple(passes) if passes is not None else None)
    raise_on_failures(check_export("onnxruntime", report.to_dict(), None, None, ExportThresholds(), int8=False),
                      str(out), written=True)
    proto = onnx.load(str(out))
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    return {"native_input_size": list(native), "embedding_size": int(dims[-1].dim_value),
            "onnx_passes": list(passes) if passes is not None else None,
            "network_spec": getattr(module, "facenas_network", None),
            "parity_min_cosine": report.min_cosine}


def verify_accuracy(file: Path, bin_path: Path, expected: float, threads: int = 1) -> float:
    """``facenas eval --model FILE --bin BIN`` on the published file; its ``lfw_acc`` (raises if off by > 1e-3)."""
    cmd = [sys.executable, "-m", "facenas", "-q", "eval", "--model", str(file), "--bin", str(bin_path),
           "--threads", str(threads), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FacenasError(f"facenas eval on {file} failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    key = f"{bin_path.stem}_acc"
    got = float(result[key])
    if abs(got - expected) > ACC_TOLERANCE:
        raise FacenasError(f"{file}: facenas eval gives {key} {got:.4f}, the record {expected:.4f} (off by more than "
                           f"{ACC_TOLERANCE}): the file does not reproduce its recorded accuracy")
    return got


def _find_recorded(row: Row, results: Path, records: dict[str, dict[str, Any] | None],
                   sources: Sequence[RowSource]) -> Found | None:
    """:func:`find` in the row's record (read once per record); None, with a log line, when not recorded yet."""
    if row.record not in records:
        records[row.record] = load_record(results, row.record)
    record = records[row.record]
    if record is None:
        log.info("%s: %s is not recorded yet (no %s): left out", row.file, row.record, results / f"{row.record}.json")
        return None
    found = find(record, row, sources)
    if found is None:
        log.info("%s: step %s%s of %s (or the runtime.latency step timing it) is not recorded yet: left out",
                 row.file, row.step, f" network {row.headline_name!r}" if row.headline_name else "", row.record)
    return found


def publish(rows: list[Row], run_dirs: Mapping[str, Path], results: Path = RESULTS_DIR, out_dir: Path = MODELS_DIR,
            verify_bin: Path | None = None, sources: Sequence[RowSource] = ROW_SOURCES) -> dict[str, Any]:
    """Export every recorded row into ``out_dir`` and write its ``manifest.json``; returns the manifest.
    ``sources``: how each record's networks are read (benchmarks.seed_rows.ROW_SOURCES)."""
    from facenas.utils.io import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any] | None] = {}
    entries, skipped = [], []
    recorded: dict[str, tuple[Row, Found]] = {}
    for row in rows:
        found = _find_recorded(row, results, records, sources)
        if found is None:
            skipped.append(row.file)
        else:
            recorded[row.file] = (row, found)
    # a searched network is published with the reference it is compared with, not before
    waiting = [f for f, (r, _) in recorded.items() if r.compare_with is not None and r.compare_with not in recorded]
    while waiting:
        for f in waiting:
            log.info("%s: its reference %s is not recorded yet: left out until it is", f, recorded[f][0].compare_with)
            skipped.append(f)
            del recorded[f]
        waiting = [f for f, (r, _) in recorded.items() if r.compare_with is not None and r.compare_with not in recorded]
    manifest_path = out_dir / MANIFEST
    old = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    old_entries = {e.get("file"): e for e in old.get("models", [])}
    for row, found in recorded.values():
        if row.record not in run_dirs and row.file in old_entries:
            # its run folder is not given (only the runs that changed are): the published file stays, checked
            # against its entry and the record, with its record-derived fields rewritten
            entries.append(_refreshed(row, old_entries[row.file], found, out_dir))
            log.info("kept %s (no --run %s=RUN_DIR given: not exported again)", row.file, row.record)
            continue
        record, train, latency = records[row.record] or {}, found.train, found.latency
        recorded_ckpt, ckpt = _checkpoint(found, row, run_dirs)
        m, lm = train.get("metrics") or {}, latency.get("metrics") or {}
        path = out_dir / row.file
        exported = _export(row, ckpt, train, latency, path)
        size = path.stat().st_size
        if size > MAX_BYTES:
            path.unlink()
            raise FacenasError(f"{row.file}: {size} bytes, over the {MAX_BYTES}-byte limit of a published network")
        if verify_bin is not None:
            got = verify_accuracy(path, verify_bin, float(m["lfw_acc"]))
            log.info("%s: facenas eval lfw_acc %.6f (recorded %.6f)", row.file, got, m["lfw_acc"])
        entries.append({
            **_record_fields(row, found), "sha256": _sha256(path), "size_bytes": size,
            "input_size": [112, 112], "native_input_size": exported["native_input_size"],
            "embedding_size": exported["embedding_size"], "onnx_passes": exported["onnx_passes"],
            # a latency trial timing several networks states no input size: each was timed at its native one
            "latency_setting": {"batch": 1, "threads": lm.get("threads"),
                                "input_size": lm.get("input_size") or exported["native_input_size"],
                                "passes": lm.get("passes"),
                                "note": "the backbone at its native input; the file adds the 112x112 resize in front"},
            "source": {**_source_fields(row, found), "checkpoint": recorded_ckpt,
                       "experiment_file": record.get("experiment_file"), "network": exported["network_spec"]},
        })
        log.info("published %s (%.2f MB, %s %.4f, parity min cosine %.6f)", row.file, size / 1e6,
                 found.source.metric, found.primary.lfw_acc, exported["parity_min_cosine"])
    published = {e["file"] for e in entries}
    for stale in {e.get("file") for e in old.get("models", [])} - published:
        if stale and (out_dir / stale).is_file():
            log.info("removing %s: no longer published", stale)
            (out_dir / stale).unlink()
    manifest = {"models": entries}
    write_json(manifest_path, manifest)
    return {"manifest": str(manifest_path), "published": sorted(published), "not_recorded_yet": skipped}


def _refreshed(row: Row, old: Mapping[str, Any], found: Found | None, out_dir: Path) -> dict[str, Any]:
    """A published entry with its record-derived fields rewritten, no export: the file must be the one the entry
    describes (sha256) and the record's primary run must still hold its network (checkpoint, accuracy, size)."""
    path = out_dir / row.file
    if not path.is_file() or _sha256(path) != old.get("sha256"):
        raise FacenasError(f"{path}: missing or not the file the manifest describes (sha256): publish it again "
                           "with --run")
    if found is None or found.checkpoint != (old.get("source") or {}).get("checkpoint"):
        raise FacenasError(f"{row.file}: the primary run of {row.record} no longer holds the published network "
                           f"(step {row.step}): publish again with --run")
    fields = _record_fields(row, found)
    for key in ("lfw_acc", "mflops", "params_m", "seed"):
        if fields[key] != old.get(key):
            raise FacenasError(f"{row.file}: {key} {old.get(key)} in the manifest, {fields[key]} in {row.record}'s "
                               "primary run: publish again with --run")
    return {**old, **fields, "source": {**(old.get("source") or {}), **_source_fields(row, found)}}


def refresh(rows: list[Row], results: Path = RESULTS_DIR, out_dir: Path = MODELS_DIR,
            sources: Sequence[RowSource] = ROW_SOURCES) -> dict[str, Any]:
    """Rewrite the record-derived fields of the published entries (no export): each file must be the one
    the manifest describes (sha256) and the record's primary run must still hold its network."""
    from facenas.utils.io import write_json

    manifest_path = out_dir / MANIFEST
    if not manifest_path.is_file():
        raise FacenasError(f"{manifest_path} does not exist: publish first (python -m benchmarks.publish_models "
                           "--run RECORD=RUN_DIR)")
    by_file = {r.file: r for r in rows}
    entries = json.loads(manifest_path.read_text(encoding="utf-8")).get("models", [])
    records: dict[str, dict[str, Any] | None] = {}
    out = []
    for old in entries:
        row = by_file.get(old.get("file"))
        if row is None:
            raise FacenasError(f"{old.get('file')} is published but not listed in the rows file: publish again "
                               "with --run to drop it")
        out.append(_refreshed(row, old, _find_recorded(row, results, records, sources), out_dir))
    write_json(manifest_path, {"models": out})
    return {"manifest": str(manifest_path), "refreshed": [e["file"] for e in out]}


def _run_dirs(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--run {item!r}: expected RECORD=RUN_DIR, e.g. --run reference_front_cpu=runs/reference_front")
        if not Path(folder).is_dir():
            raise FacenasError(f"--run {item!r}: {folder} is not a folder")
        out[name] = Path(folder)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], metavar="RECORD=RUN_DIR",
                    help="where the run recorded as benchmarks/results/RECORD.json is (repeatable)")
    ap.add_argument("--rows", type=Path, default=ROWS_FILE, help="the rows to publish (default: %(default)s)")
    ap.add_argument("--results", type=Path, default=RESULTS_DIR, help="the recorded results folder")
    ap.add_argument("--out", type=Path, default=MODELS_DIR, help="where the ONNX files and manifest.json go")
    ap.add_argument("--verify-bin", type=Path, default=None,
                    help="lfw.bin: check that facenas eval on each file reproduces its recorded lfw_acc (1e-3)")
    ap.add_argument("--refresh", action="store_true",
                    help="only rewrite the published entries' record-derived fields (seeds, role, budget, ...), no export")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        if args.verify_bin is not None and not args.verify_bin.is_file():
            raise FacenasError(f"--verify-bin {args.verify_bin}: no such file")
        if args.refresh:
            out = refresh(load_rows(args.rows), args.results, args.out)
        else:
            out = publish(load_rows(args.rows), _run_dirs(args.run), args.results, args.out, args.verify_bin)
    except FacenasError as exc:
        print(f"publish_models: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
