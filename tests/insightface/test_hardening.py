"""Issue 18, data layer: one test (or a few) per numbered item.

2: RecordIO header / label ranges are checked against the index before anything is allocated;
3: memory amplification (.bin memo bomb, 20000x20000 PNG) is refused before decoding;
4: data errors are one line, also through DataLoader workers, and `data synth` / `data pairs`
   arguments are checked;
6: unvalidated inputs (tiny .bin, labels out of range, property, mixed sizes, one identity);
9: NaN / inf embeddings say the model diverged.
"""
from __future__ import annotations

import pickle
import shutil
import struct
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from benchmarks.fuzz_data import png_bomb
from facenas.adapters.insightface import recordio as rio
from facenas.adapters.insightface.binset import load_bin, read_bin_raw
from facenas.adapters.insightface.dataset import get_dataloader
from facenas.adapters.insightface.evaluate import VerificationEvaluator
from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset
from facenas.adapters.insightface.verification import evaluate
from facenas.cli import main
from facenas.errors import DataFormatError, ModelDivergedError


@pytest.fixture(autouse=True)
def _fresh_log_handler():
    """main() logs to the sys.stderr of its first call; capsys swaps sys.stderr per test."""
    import logging

    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_facenas", False)]:
        root.removeHandler(handler)


def cli(*argv: str) -> int:
    """``facenas -q ...`` in process (-q: no progress lines, so stderr holds only an error)."""
    return main(["-q", *argv])


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """4 identities x 3 images (32x32) as train.rec/.idx/property, and a 12-pair val.bin."""
    out = tmp_path_factory.mktemp("small")
    write_synthetic_dataset(out, SyntheticConfig(num_identities=4, images_per_identity=3, val_identities=4,
                                                 val_pairs=12, image_size=32, seed=0))
    return out


def _copy(small: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    dst.mkdir()
    for name in ("train.rec", "train.idx", "property"):
        shutil.copy(small / name, dst / name)
    return dst


def _patch(folder: Path, key: int, offset: int, fmt: str, *values) -> None:
    raw = bytearray((folder / "train.rec").read_bytes())
    struct.pack_into(fmt, raw, rio.read_index(folder / "train.idx")[key] + 8 + offset, *values)
    (folder / "train.rec").write_bytes(bytes(raw))


def _one_line_error(capsys, command: str = "data") -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"facenas {command}: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def _jpeg(size: int = 112, value: int = 90) -> bytes:
    rng = np.random.default_rng(value)
    return cv2.imencode(".jpg", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))[1].tobytes()


# -- item 2: RecordIO header and labels ----------------------------------------------------------
@pytest.mark.parametrize("first, end, fragment", [
    (13, 3e38, "does not fit in"),  # hung: a 3e38-step loop
    (13, 1e9, "the index holds 17 keys"),  # took 31 s, then exit 0
    (1e8, 1e8 + 1, "the index holds 17 keys"),  # list(range(1, 1e8)): 4.9 GB
    (float("nan"), 17, "is nan, not a finite number"),
    (13, float("inf"), "is inf, not a finite number"),
    (13.5, 17, "not a whole number"),
    (0, 17, "does not fit in"),
])
def test_header_key_ranges_are_checked_before_allocating(small, tmp_path, capsys, first, end, fragment):
    data = _copy(small, tmp_path)
    _patch(data, 0, 24, "<ff", first, end)
    tracemalloc.start()
    t0 = time.perf_counter()
    code = cli("data", "info", str(data), "--json")
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2
    line = _one_line_error(capsys)
    assert "train.rec record 0 (the header)" in line and fragment in line, line
    assert seconds < 10 and peak < 20 << 20, (seconds, peak)


@pytest.mark.real_data
def test_the_issues_header_labels_on_celeba299(celeba299, tmp_path, capsys):
    data = tmp_path / "celeba"
    data.mkdir()
    for name in ("train.rec", "train.idx", "property"):
        shutil.copy(celeba299 / name, data / name)
    for first, end in ((6285, 3e38), (6285, 1e9), (1e8, 1e8 + 1), (float("nan"), 6584)):
        _patch(data, 0, 24, "<ff", first, end)
        t0 = time.perf_counter()
        assert cli("data", "info", str(data), "--json") == 2
        assert time.perf_counter() - t0 < 10
        assert "record 0 (the header)" in _one_line_error(capsys)


def test_identity_records_must_tile_the_image_keys(small, tmp_path, capsys):
    data = _copy(small, tmp_path)
    _patch(data, 14, 24, "<ff", 3, 8)  # identity 1 claims keys [3, 8): overlaps identities 0 and 2
    assert cli("data", "info", str(data)) == 2
    line = _one_line_error(capsys)
    assert "record 14 (identity 1)" in line and "covers image keys [3, 8)" in line


def test_an_idx_pointing_a_key_at_another_record_is_refused(small, tmp_path, capsys):
    data = _copy(small, tmp_path)
    idx = dict(rio.read_index(data / "train.idx"))
    idx[1], idx[2] = idx[2], idx[1]  # two images of the same identity: labels alone cannot tell
    (data / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in idx.items()))
    assert cli("data", "info", str(data)) == 2
    assert "record 1: the record's id field says it is key 2" in _one_line_error(capsys)


def test_valid_files_read_as_before(small):
    from facenas.adapters.insightface.dataset import MXFaceDataset

    ds = MXFaceDataset(small, flip=False)
    assert ds.num_classes == 4 and len(ds) == 12 and ds.expected_size == (32, 32)
    assert [ds.read(i)[1] for i in range(12)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


# -- item 3: memory amplification -----------------------------------------------------------------
def test_memo_bomb_bin_is_refused_before_decoding(tmp_path, capsys):
    jpeg = _jpeg(112)
    path = tmp_path / "memo.bin"
    path.write_bytes(pickle.dumps(([jpeg] * 60000, [True] * 30000), protocol=4))
    assert path.stat().st_size < 200_000  # ~156 KB that would decode to 2.3 GB
    tracemalloc.start()
    assert cli("data", "info", str(path), "--json") == 2
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    line = _one_line_error(capsys)
    assert "60000 images are only 1 distinct byte strings" in line and "refused before decoding" in line
    assert peak < 50 << 20
    # the same through numpy arrays (each would become its own bytes copy) and with --no-decode
    path.write_bytes(pickle.dumps(([np.frombuffer(jpeg, np.uint8)] * 60000, [True] * 30000), protocol=2))
    with pytest.raises(DataFormatError, match="only 1 distinct"):
        read_bin_raw(path)


def test_decoded_size_is_bounded_by_the_file_size(tmp_path):
    # distinct images, but each claims 4096x4096 (48 MiB decoded) in a few hundred bytes
    from benchmarks.fuzz_data import jpeg_claiming

    images = [jpeg_claiming(_jpeg(32, v), 4096, 4096) for v in range(40)]
    (tmp_path / "big.bin").write_bytes(pickle.dumps((images, [True] * 20)))
    with pytest.raises(DataFormatError, match=r"40 images of 4096x4096 would decode to 1,920 MiB .* refused before"):
        load_bin(tmp_path / "big.bin")


def test_png_bomb_builder_writes_a_real_png():
    small_bomb = png_bomb(300, 200)
    img = cv2.imdecode(np.frombuffer(small_bomb, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (200, 300) and not img.any()
    assert 300_000 < len(png_bomb()) < 450_000  # the issue's 390 KB 20000x20000 PNG


def test_png_bomb_is_refused_before_decoding_in_a_bin_and_a_rec(small, tmp_path, capsys):
    bomb = png_bomb()
    bins, issame = read_bin_raw(small / "val.bin")
    issame = issame.tolist()
    bins[3] = bomb
    (tmp_path / "bomb.bin").write_bytes(pickle.dumps((bins, issame)))
    tracemalloc.start()
    assert cli("data", "info", str(tmp_path / "bomb.bin")) == 2
    assert "image 3 (pair 1): the image header says 20000x20000" in _one_line_error(capsys)
    data = _copy(small, tmp_path)
    records = {k: (rio.IndexedRecordIO(data / "train.idx", data / "train.rec").read_idx(k)) for k in range(17)}
    header, _ = rio.unpack(records[5])
    records[5] = rio.pack(header, bomb)
    with rio.IndexedRecordIO(data / "train.idx", data / "train.rec", "w") as w:
        for k in sorted(records):
            w.write_idx(k, records[k])
    assert cli("data", "info", str(data)) == 2
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    line = _one_line_error(capsys)
    assert "train.rec record 5: the image header says 20000x20000 = 400,000,000 pixels" in line
    assert "refused before decoding" in line and peak < 100 << 20


# -- item 4: one line, also through DataLoader workers ---------------------------------------------
def _replace_payload(data: Path, key: int, payload: bytes) -> None:
    rec = rio.IndexedRecordIO(data / "train.idx", data / "train.rec")
    records = {k: rec.read_idx(k) for k in sorted(rec.idx)}
    header, _ = rio.unpack(records[key])
    records[key] = rio.pack(header, payload)
    with rio.IndexedRecordIO(data / "train.idx", data / "train.rec", "w") as w:
        for k in sorted(records):
            w.write_idx(k, records[k])


@pytest.mark.parametrize("payload, fragment", [
    (b"\xff\xd8 not a jpeg" * 20, "record 7: payload of 260 bytes is not a decodable image"),
    (b"", "record 7: the image payload is empty (0 bytes)"),
])
def test_undecodable_image_in_loader_workers_is_one_data_error(small, tmp_path, payload, fragment):
    data = _copy(small, tmp_path)
    _replace_payload(data, 7, payload)
    loader = get_dataloader(data, 0, batch_size=4, num_workers=2, seed=0, drop_last=False)  # the default workers
    with pytest.raises(DataFormatError) as info:
        for _ in loader:
            pass
    message = str(info.value)
    assert fragment in message and "\n" not in message and "Traceback" not in message, message


def test_nan_label_through_loader_workers(small, tmp_path):
    data = _copy(small, tmp_path)
    _patch(data, 4, 4, "<f", float("nan"))
    with pytest.raises(DataFormatError, match=r"record 4: the label is nan, not a finite number"):
        for _ in get_dataloader(data, 0, batch_size=4, num_workers=2, seed=0, drop_last=False):
            pass


@pytest.mark.parametrize("argv, fragment", [
    (["--identities", "-5"], "num_identities (--identities) is -5; it must be a whole number >= 2"),
    (["--image-size", "0"], "image_size (--image-size) is 0"),
    (["--image-size", "60000"], "image_size (--image-size) is 60000; at most 1024"),
    (["--val-identities", "1"], "val_identities (--val-identities) is 1"),
    (["--identities", "100000", "--images-per-identity", "1000"], "GiB of memory"),
])
def test_synth_arguments_are_checked(tmp_path, capsys, argv, fragment):
    tracemalloc.start()
    assert cli("data", "synth", str(tmp_path / "out"), *argv) == 2
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert fragment in _one_line_error(capsys)
    assert peak < 50 << 20 and not (tmp_path / "out" / "train.rec").exists()  # refused before drawing anything


def test_pairs_with_a_missing_pairs_file(tmp_path, capsys):
    (tmp_path / "faces").mkdir()
    assert cli("data", "pairs", str(tmp_path / "nope.txt"), str(tmp_path / "faces"), str(tmp_path / "x.bin")) == 2
    assert "nope.txt: no such pairs file" in _one_line_error(capsys)
    (tmp_path / "pairs.txt").write_text("a 1 2\n")
    assert cli("data", "pairs", str(tmp_path / "pairs.txt"), str(tmp_path / "missing"), str(tmp_path / "x.bin")) == 2
    assert "missing: no such image folder" in _one_line_error(capsys)


# -- item 6: unvalidated inputs --------------------------------------------------------------------
def _tiny_model(path: Path, nan: bool = False) -> Path:
    from facenas.adapters.insightface.backbones import get_model
    from facenas.adapters.insightface.backbones.checkpoint import save_backbone

    torch.manual_seed(0)
    model = get_model("mbf", width_mult=0.25, input_size=32, num_features=16)
    if nan:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
    save_backbone(model, path, embedding_size=16)
    return path


def test_bins_with_too_few_pairs_are_refused(small, tmp_path, capsys):
    bins, issame = read_bin_raw(small / "val.bin")
    issame = issame.tolist()
    (tmp_path / "empty.bin").write_bytes(pickle.dumps(([], [])))
    assert cli("data", "info", str(tmp_path / "empty.bin")) == 2
    assert "empty.bin: holds no pairs" in _one_line_error(capsys)
    (tmp_path / "nine.bin").write_bytes(pickle.dumps((bins[:18], issame[:9])))
    model = _tiny_model(tmp_path / "model.pt")
    assert cli("eval", "--model", str(model), "--bin", str(tmp_path / "nine.bin"), "--threads", "1") == 2
    assert "nine.bin: holds 9 pair(s); 10-fold verification needs at least 10" in _one_line_error(capsys, "eval")
    with pytest.raises(DataFormatError, match="needs at least 10"):
        VerificationEvaluator([tmp_path / "nine.bin"])


@pytest.mark.parametrize("label, fragment", [
    (-1, "label -1 is outside the identities 0..3"),
    (4, "label 4 is outside the identities 0..3"),  # "299 of 299 classes"
    (1e6, "label 1000000 is outside the identities 0..3"),
    (5.5, "the label is 5.5, not a whole number"),
    (3, "label 3 but the identity records put this key in identity 1"),  # a valid identity, the wrong one
])
def test_image_labels_are_checked(small, tmp_path, capsys, label, fragment):
    data = _copy(small, tmp_path)
    _patch(data, 5, 4, "<f", label)
    assert cli("data", "info", str(data)) == 2
    line = _one_line_error(capsys)
    assert "train.rec record 5: " + fragment in line, line


@pytest.mark.parametrize("text, fragment", [
    ("5,32,32", "property: says 5 identities but"),
    ("4,33,32", "property: says images are 33x32 but they are 32x32"),
    ("abc", "property: holds 'abc', expected 'num_classes,height,width'"),
    ("0,32,32", "says 0 identities"),
    ("4,99999,32", "sides 1..4096"),
])
def test_property_is_read_and_checked(small, tmp_path, capsys, text, fragment):
    data = _copy(small, tmp_path)
    (data / "property").write_text(text)
    assert cli("data", "info", str(data)) == 2
    assert fragment in _one_line_error(capsys)


def test_property_without_identity_records_gives_num_classes(tmp_path):
    with rio.IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec", "w") as w:  # plain RecordIO list
        for key, label in enumerate([0, 1, 2, 1]):
            w.write_idx(key, rio.pack((0, float(label), key, 0), _jpeg(16, key)))
    (tmp_path / "property").write_text("3,16,16")
    from facenas.adapters.insightface.dataset import MXFaceDataset

    ds = MXFaceDataset(tmp_path)
    assert ds.num_classes == 3 and [ds.read(i)[1] for i in range(4)] == [0, 1, 2, 1]
    (tmp_path / "property").write_text("2,16,16")
    with pytest.raises(DataFormatError, match="record 2: label 2 is outside the identities 0..1"):
        MXFaceDataset(tmp_path).read(2)


def test_mixed_image_sizes_in_an_image_folder(tmp_path):
    for ident in ("a", "b"):
        (tmp_path / "faces" / ident).mkdir(parents=True)
        for k in range(3):
            size = 24 if (ident, k) == ("b", 1) else 20
            cv2.imwrite(str(tmp_path / "faces" / ident / f"{k}.png"), np.full((size, size, 3), 40 * k, np.uint8))
    for workers in (0, 2):
        with pytest.raises(DataFormatError, match=r"b/1.png: image is 24x24 \(HxW\) but the dataset's images are 20x20"):
            for _ in get_dataloader(tmp_path / "faces", 0, batch_size=6, num_workers=workers, drop_last=False):
                pass
    # resizing makes them one size: accepted
    images, _ = next(iter(get_dataloader(tmp_path / "faces", 0, batch_size=6, num_workers=0, image_size=16)))
    assert images.shape == (6, 3, 16, 16)


def test_a_single_identity_cannot_be_trained_on(tmp_path, capsys):
    rio.write_insightface_rec(tmp_path / "one", [_jpeg(16, v) for v in range(4)], [0] * 4, (16, 16))
    with pytest.raises(DataFormatError, match="holds a single identity; a margin-softmax classifier needs at least 2"):
        get_dataloader(tmp_path / "one", 0, batch_size=2, num_workers=0)
    assert cli("data", "info", str(tmp_path / "one"), "--json") == 0  # describing it is fine
    capsys.readouterr()


# -- item 9: a diverged model ----------------------------------------------------------------------
def test_nan_or_inf_embeddings_say_the_model_diverged(small, tmp_path, capsys):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    issame = np.arange(20) % 2 == 0
    assert 0 <= evaluate(emb, issame).accuracy <= 1
    for bad in (np.nan, np.inf):
        broken = emb.copy()
        broken[7, 3] = bad
        with pytest.raises(ModelDivergedError, match=r"1 of 40 embeddings are NaN or inf \(first: image 7\): the model diverged"):
            evaluate(broken, issame)
    model = _tiny_model(tmp_path / "nan.pt", nan=True)
    assert cli("eval", "--model", str(model), "--bin", str(small / "val.bin"), "--threads", "1") == 2
    line = _one_line_error(capsys, "eval")
    assert "val (" in line and "embeddings are NaN or inf" in line and "the model diverged" in line
