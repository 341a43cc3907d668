"""The numpy ``.idx`` reader: the same ``{key: offset}`` as a line-by-line dict, fast on canonical files,
the careful reader (and its exact errors) for everything else; the scale writer's output reads back."""
from __future__ import annotations

import numpy as np
import pytest

from facenas.adapters.insightface import recordio as rio
from facenas.errors import DataFormatError


def _dict_reader(text: str) -> dict[int, int]:
    out = {}
    for line in text.splitlines():
        if line.strip():
            k, o = line.strip().split("\t")
            out[int(k)] = int(o)
    return out


@pytest.mark.parametrize("text, fast", [
    ("0\t0\n1\t40\n2\t808\n", True),              # MXNet's layout: dense keys, fast path
    ("0\t0\n1\t40\n2\t808", True),                # no final newline
    ("5\t10\n2\t20\n9\t30\n", True),              # sparse, unsorted keys: binary search
    ("1\t10\n1\t20\n0\t5\n", True),               # a key twice: the last line wins, as in a dict
    ("0\t0\n\n1\t40\n", False),                   # blank line: the careful reader
    (" 0\t0\r\n1\t40 \r\n", False),               # spaces and CRLF
    ("", True),
])
def test_index_matches_a_dict(tmp_path, text, fast):
    path = tmp_path / "x.idx"
    path.write_text(text)
    index = rio.read_index(path)
    assert isinstance(index, rio.RecordIndex)
    assert (rio._parse_index_fast(text.encode()) is not None) == fast
    expected = _dict_reader(text)
    assert dict(index) == expected and len(index) == len(expected)
    for key, offset in expected.items():
        assert key in index and index[key] == offset and index[np.int64(key)] == offset
    for absent in (-1, 3, 100, "0", 1.5):
        if absent not in expected:
            assert absent not in index
    assert index.missing(np.array([0, 1, 2, 5, 77])).tolist() == [k for k in (0, 1, 2, 5, 77) if k not in expected]


@pytest.mark.parametrize("text, line", [("0\t0\n1\t\n", 2), ("0 zero\n", 1), ("a\tb\n", 1),
                                        ("0\t0\n-\t3\n", 2)])
def test_malformed_lines_are_named(tmp_path, text, line):
    path = tmp_path / "x.idx"
    path.write_text(text)
    assert rio._parse_index_fast(text.encode()) is None
    with pytest.raises(DataFormatError, match=f"line {line}"):
        rio.read_index(path)


def test_scale_writer_reads_back_as_insightface_layout(tmp_path):
    from facenas.adapters.insightface.dataset import MXFaceDataset
    from facenas.adapters.insightface.synthetic_scale import ScaleShape, write_scale_dataset

    info = write_scale_dataset(tmp_path, ScaleShape(1003, 10, jpeg_size=16, distinct_jpegs=7))
    assert info["records"] == 1003 + 10 + 1
    ds = MXFaceDataset(tmp_path, flip=False)
    assert len(ds) == 1003 and ds.num_classes == 10
    labels = [ds.read(i)[1] for i in range(len(ds))]
    assert labels == sorted(labels) and np.bincount(labels).tolist() == [101, 101, 101] + [100] * 7
    image, _ = ds.read(500)
    assert image.shape == (16, 16, 3)
    # the same bytes as the general writer for the same images and labels
    pool = __import__("facenas.adapters.insightface.synthetic_scale", fromlist=["jpeg_pool"]).jpeg_pool(7, 16)
    sizes = [101, 101, 101] + [100] * 7
    images = [pool[(label * 31 + j) % 7] for label, n in enumerate(sizes) for j in range(n)]
    rio.write_insightface_rec(tmp_path / "ref", images, [label for label, n in enumerate(sizes) for _ in range(n)],
                              (16, 16))
    for name in ("train.rec", "train.idx", "property"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_synth_cli_shape_flags(tmp_path, capsys):
    import json

    from facenas.cli import main

    assert main(["data", "synth", str(tmp_path / "s"), "--total-images", "500", "--identities", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["images"] == 500 and out["identities"] == 7
    assert main(["data", "synth", str(tmp_path / "t"), "--shape", "ms1m_v9"]) == 2
    assert "ms1mv3" in capsys.readouterr().err
