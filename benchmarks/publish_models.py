"""Publish the networks of the README's headline table: ONNX files and ``manifest.json``.

    python -m benchmarks.publish_models --run reference_front_cpu=RUN_DIR [--verify-bin lfw.bin]
    python -m benchmarks.publish_models --refresh   # the entries' record-derived fields only, no export

The rows are listed in ``benchmarks/published_models.yml``: each names a pipeline run recorded by
``benchmarks.collect_pipeline`` (``benchmarks/results/<record>.json``) and an ``engine.train`` step
of it. The published weights are the checkpoint the run's ``runtime.latency`` step timed (the
step's ``last.pt``: the final weights, which are also the ones ``engine.train`` evaluated for its
recorded ``lfw_acc``; ``best.pt``'s figures are ``best_lfw_*``). ``--run RECORD=DIR`` says where
that run's folder is on this machine (the record writes it as ``$RUN_DIR``).

Each network is exported with the project's exporter (``export_onnx``: InsightFace's 112x112
aligned-face input, the data layer's resize in front of a network trained at 64x64, the graph
passes the latency step timed for onnxruntime, and the torch-vs-onnxruntime parity check), and
``benchmarks/results/models/manifest.json`` gets one entry per file: accuracy, its fold std, seed,
MFLOPs and params from the train trial, latency from the latency trial -- every number read from the
record, none typed in -- with the file's sha256. ``--verify-bin`` also runs ``facenas eval`` on each
file and refuses to publish one that does not reproduce the recorded ``lfw_acc`` to 1e-3.
Rows whose steps are not recorded yet are left out (the manifest lists what exists).

Seeds: a record may hold several seed runs of its experiment file (``benchmarks.collect_pipeline``);
the published file is the network of the record's primary run (its ``trials``), and its entry's
``seeds`` gives the statistics of that step over every recorded seed run (``n``, ``seeds``,
``values``, ``mean``, sample ``std``; ``std`` null for one seed). ``--refresh`` rewrites the
record-derived fields of the entries already published (seeds, role, target runtime, compare_with,
budget, device) without exporting again, after checking that each file's sha256 is the manifest's and
that the record's primary run still holds the entry's network.
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
from typing import Any, Mapping

from benchmarks._common import RESULTS_DIR
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
    step: str  # the record's engine.train step
    network: str  # a readable name
    method: str  # hand-designed | the search method (ofa, tnas, enas)
    role: str  # reference | searched
    target_runtime: str | None  # the runtime a searched network was searched for
    compare_with: str | None  # the reference's file a searched network is compared with


def load_rows(path: Path = ROWS_FILE) -> list[Row]:
    """The rows of ``path``, checked: known fields, role / target_runtime values, unique files."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    items = data.get("models") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a mapping with a 'models' list")
    fields = {f.name for f in dataclasses.fields(Row)}
    rows = []
    for i, item in enumerate(items):
        where = f"{path}: models[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with fields {sorted(fields)}")
        unknown, missing = sorted(set(item) - fields), sorted(fields - set(item))
        if unknown or missing:
            raise ConfigError(f"{where}: unknown field(s) {unknown}, missing {missing}; the fields are {sorted(fields)}")
        row = Row(**item)
        if row.role not in ROLES:
            raise ConfigError(f"{where}: role {row.role!r} must be one of {list(ROLES)}")
        if row.target_runtime not in (None, *TARGET_RUNTIMES):
            raise ConfigError(f"{where}: target_runtime {row.target_runtime!r} must be null or one of {list(TARGET_RUNTIMES)}")
        if not str(row.file).endswith(".onnx") or "/" in str(row.file):
            raise ConfigError(f"{where}: file {row.file!r} must be a plain name ending in .onnx")
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


def load_record(results: Path, name: str) -> dict[str, Any]:
    """``benchmarks/results/<name>.json`` as collect_pipeline wrote it (the ``result`` part)."""
    path = results / f"{name}.json"
    if not path.is_file():
        raise FacenasError(f"{path} does not exist: record the run first (python -m benchmarks.collect_pipeline "
                           f"RUN_DIR --name {name} --experiment FILE)")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data.get("result"), dict) or "trials" not in data["result"]:
        raise FacenasError(f"{path} is not a pipeline record (no result.trials): it was not written by "
                           "benchmarks.collect_pipeline")
    return data["result"]


def _trials(record: Mapping[str, Any], row: Row) -> tuple[dict, dict] | None:
    """The row's succeeded engine.train trial and the runtime.latency trial that timed its checkpoint."""
    done = [t for t in record.get("trials", []) if t.get("status") == "SUCCEEDED"]
    train = next((t for t in done if t.get("step") == row.step and t.get("stage") == "engine.train"), None)
    if train is None:
        return None
    prefix = f"{RUN_DIR}/{row.step}/"
    latency = next((t for t in done if t.get("stage") == "runtime.latency"
                    and str((t.get("params") or {}).get("model", "")).startswith(prefix)), None)
    if latency is None:
        return None
    return train, latency


def _checkpoint(latency: Mapping[str, Any], row: Row, run_dirs: Mapping[str, Path]) -> tuple[str, Path]:
    """The recorded checkpoint path (``$RUN_DIR/...``) and where it is on this machine."""
    recorded = str(latency["params"]["model"])
    if Path(recorded).name != FINAL_WEIGHTS:
        raise FacenasError(f"{row.record} step {latency.get('step')} timed {recorded}; the recorded lfw_acc is of the "
                           f"final weights ({FINAL_WEIGHTS}), so the published file would not match it")
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


def _seeds(record: Mapping[str, Any], row: Row) -> dict[str, Any]:
    """The row's step over every seed run of its record: count, seeds, LFW accuracies, mean, sample std."""
    from benchmarks.seed_rows import RowSource, pipeline_rows
    from benchmarks.seed_stats import seed_stats

    rows = [r for r in pipeline_rows(row.record, record, RowSource(row.record, row.method, role=row.role))
            if r.name == row.step]
    stats = seed_stats([r.lfw_acc for r in rows])
    return {"n": stats.n, "seeds": [r.seed for r in rows], "values": list(stats.values), "mean": stats.mean,
            "std": stats.std}


def _device(train: Mapping[str, Any], latency: Mapping[str, Any]) -> dict[str, Any]:
    """Where the network was trained (host, threads) and timed (CPU), as the record states."""
    p, device = train.get("params") or {}, (latency.get("metrics") or {}).get("device")
    return {"train_host": train.get("host"), "train_threads": p.get("threads"),
            "latency_cpu": device.get("cpu") if isinstance(device, dict) else device}


def _record_fields(row: Row, record: Mapping[str, Any], train: Mapping[str, Any],
                   latency: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's fields read from the rows file and the record (no file needed)."""
    m, lm, p = train.get("metrics") or {}, latency.get("metrics") or {}, train.get("params") or {}
    lat = lm.get("latency_ms") or {}
    return {"file": row.file, "network": row.network, "method": row.method, "role": row.role,
            "target_runtime": row.target_runtime, "seed": p.get("seed"),
            "lfw_acc": m.get("lfw_acc"), "lfw_acc_std": m.get("lfw_acc_std"), "seeds": _seeds(record, row),
            "latency_ms": {rt: lat.get(rt) for rt in LATENCY_RUNTIMES},
            "mflops": m.get("mflops"), "params_m": m.get("params_m"), "compare_with": row.compare_with,
            "budget": _budget(train), "device": _device(train, latency)}


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


def publish(rows: list[Row], run_dirs: Mapping[str, Path], results: Path = RESULTS_DIR, out_dir: Path = MODELS_DIR,
            verify_bin: Path | None = None) -> dict[str, Any]:
    """Export every recorded row into ``out_dir`` and write its ``manifest.json``; returns the manifest."""
    from facenas.utils.io import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    entries, skipped = [], []
    for row in rows:
        record = records.setdefault(row.record, load_record(results, row.record))
        found = _trials(record, row)
        if found is None:
            log.info("%s: step %s of %s (or the runtime.latency step timing it) is not recorded yet: left out",
                     row.file, row.step, row.record)
            skipped.append(row.file)
            continue
        train, latency = found
        recorded_ckpt, ckpt = _checkpoint(latency, row, run_dirs)
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
            **_record_fields(row, record, train, latency), "sha256": _sha256(path), "size_bytes": size,
            "input_size": [112, 112], "native_input_size": exported["native_input_size"],
            "embedding_size": exported["embedding_size"], "onnx_passes": exported["onnx_passes"],
            "latency_setting": {"batch": 1, "threads": lm.get("threads"), "input_size": lm.get("input_size"),
                                "passes": lm.get("passes"),
                                "note": "the backbone at its native input; the file adds the 112x112 resize in front"},
            "source": {"record": f"benchmarks/results/{row.record}.json", "step": row.step,
                       "latency_step": latency.get("step"), "checkpoint": recorded_ckpt,
                       "experiment_file": record.get("experiment_file"), "network": exported["network_spec"]},
        })
        log.info("published %s (%.2f MB, LFW %.4f, parity min cosine %.6f)", row.file, size / 1e6, m.get("lfw_acc"),
                 exported["parity_min_cosine"])
    published = {e["file"] for e in entries}
    for e in entries:
        if e["compare_with"] is not None and e["compare_with"] not in published:
            raise FacenasError(f"{e['file']} compares with {e['compare_with']}, which is not published (not recorded "
                               "yet): record it first, or set compare_with to a published reference")
    manifest_path = out_dir / MANIFEST
    old = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    for stale in {e.get("file") for e in old.get("models", [])} - published:
        if stale and (out_dir / stale).is_file():
            log.info("removing %s: no longer published", stale)
            (out_dir / stale).unlink()
    manifest = {"models": entries}
    write_json(manifest_path, manifest)
    return {"manifest": str(manifest_path), "published": sorted(published), "not_recorded_yet": skipped}


def refresh(rows: list[Row], results: Path = RESULTS_DIR, out_dir: Path = MODELS_DIR) -> dict[str, Any]:
    """Rewrite the record-derived fields of the published entries (no export): each file must be the one
    the manifest describes (sha256) and the record's primary run must still hold its network."""
    from facenas.utils.io import write_json

    manifest_path = out_dir / MANIFEST
    if not manifest_path.is_file():
        raise FacenasError(f"{manifest_path} does not exist: publish first (python -m benchmarks.publish_models "
                           "--run RECORD=RUN_DIR)")
    by_file = {r.file: r for r in rows}
    entries = json.loads(manifest_path.read_text(encoding="utf-8")).get("models", [])
    records: dict[str, dict[str, Any]] = {}
    out = []
    for old in entries:
        row = by_file.get(old.get("file"))
        if row is None:
            raise FacenasError(f"{old.get('file')} is published but not listed in the rows file: publish again "
                               "with --run to drop it")
        path = out_dir / row.file
        if not path.is_file() or _sha256(path) != old.get("sha256"):
            raise FacenasError(f"{path}: missing or not the file the manifest describes (sha256): publish it again "
                               "with --run")
        record = records.setdefault(row.record, load_record(results, row.record))
        found = _trials(record, row)
        if found is None or (found[1].get("params") or {}).get("model") != (old.get("source") or {}).get("checkpoint"):
            raise FacenasError(f"{row.file}: the primary run of {row.record} no longer holds the published network "
                               f"(step {row.step}): publish again with --run")
        fields = _record_fields(row, record, *found)
        for key in ("lfw_acc", "mflops", "params_m", "seed"):
            if fields[key] != old.get(key):
                raise FacenasError(f"{row.file}: {key} {old.get(key)} in the manifest, {fields[key]} in {row.record}'s "
                                   "primary run: publish again with --run")
        out.append({**old, **fields})
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
