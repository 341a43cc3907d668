"""Safe .bin loading: real files, py2/py3 pickles, a crafted pickle that must not run, bad inputs."""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from facenas.adapters.insightface.binset import (
    UnsafePickleError,
    build_bin_from_pairs,
    load_bin,
    read_bin_raw,
    write_bin,
)
from facenas.errors import DataFormatError


def _jpeg(value: int, size: int = 16) -> bytes:
    return cv2.imencode(".jpg", np.full((size, size, 3), value, np.uint8))[1].tobytes()


def test_write_and_load_round_trip(tmp_path):
    images = [_jpeg(10 * i) for i in range(6)]
    write_bin(tmp_path / "s.bin", images, [True, False, True])
    vs = load_bin(tmp_path / "s.bin")
    assert vs.name == "s" and vs.num_pairs == 3 and vs.issame.tolist() == [True, False, True]
    assert vs.images.shape == (6, 16, 16, 3) and vs.image_size == (16, 16)


def test_loads_py3_protocol2_and_py2_style_pickles(tmp_path):
    images = [_jpeg(50), _jpeg(60)]
    # Python 3 protocol 2 pickles store bytes through _codecs.encode
    (tmp_path / "p2.bin").write_bytes(pickle.dumps((images, [True]), protocol=2))
    assert load_bin(tmp_path / "p2.bin").num_pairs == 1
    # a py2 pickle stores images as str (SHORT_BINSTRING / BINSTRING opcodes) and bools as NEWTRUE
    body = b"\x80\x02(]q\x00(" + b"".join(
        (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + len(b).to_bytes(4, "little")) + b for b in images
    ) + b"e]q\x01\x88at."
    (tmp_path / "py2.bin").write_bytes(body)
    images_back, same = read_bin_raw(tmp_path / "py2.bin")
    assert images_back == images and same.tolist() == [True]
    # images stored as numpy uint8 arrays
    arrays = [np.frombuffer(b, np.uint8) for b in images]
    (tmp_path / "np.bin").write_bytes(pickle.dumps((arrays, np.array([False])), protocol=2))
    assert load_bin(tmp_path / "np.bin").issame.tolist() == [False]


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_BIN",))


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_Exploit(), _jpeg(1)], [True])))
    with pytest.raises(UnsafePickleError, match=r"evil.bin: refusing to load: the pickle references '(posix|os)\.system'"):
        load_bin(tmp_path / "evil.bin")
    assert not (tmp_path / "PWNED_BY_BIN").exists()
    # the same refusal for builtins like eval
    (tmp_path / "evil2.bin").write_bytes(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        read_bin_raw(tmp_path / "evil2.bin")


@pytest.mark.parametrize("content, message", [
    (b"this is not a pickle", "not a pickle"),
    (pickle.dumps({"bins": []}), "expected a 2-tuple"),
    (pickle.dumps(([b"a", b"b", b"c"], [True])), "3 images is an odd count"),
    (pickle.dumps(([b"a", b"b"], [True, False])), "2 images make 1 pairs but issame has 2"),
    (pickle.dumps(([1, 2], [True])), r"bins\[0\] \(pair 0\) is a int"),
    (pickle.dumps((b"ab", [True]))[:-5], "not a readable pickle"),
])
def test_bad_bin_structures(tmp_path, content, message):
    (tmp_path / "bad.bin").write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        load_bin(tmp_path / "bad.bin")


def test_undecodable_image_names_the_pair(tmp_path):
    write_bin(tmp_path / "bad.bin", [_jpeg(1), _jpeg(2), _jpeg(3), b"garbage"], [True, False])
    with pytest.raises(DataFormatError, match=r"image 3 \(pair 1\) is not a decodable image"):
        load_bin(tmp_path / "bad.bin")


def test_build_bin_from_lfw_pairs(tmp_path):
    root = tmp_path / "lfw"
    for name, n in (("Ann_A", 2), ("Bob_B", 1)):
        (root / name).mkdir(parents=True)
        for k in range(1, n + 1):
            cv2.imwrite(str(root / name / f"{name}_{k:04d}.jpg"), np.full((20, 20, 3), 40 * k, np.uint8))
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\n")
    info = build_bin_from_pairs(tmp_path / "pairs.txt", root, tmp_path / "out.bin", image_size=16)
    assert info == {"pairs": 2, "same": 1, "different": 1}
    vs = load_bin(tmp_path / "out.bin")
    assert vs.issame.tolist() == [True, False] and vs.image_size == (16, 16)
    (tmp_path / "pairs.txt").write_text("Ann_A\t1\t3\n")
    with pytest.raises(DataFormatError, match="Ann_A_0003"):
        build_bin_from_pairs(tmp_path / "pairs.txt", root, tmp_path / "out2.bin")


@pytest.mark.real_data
def test_real_lfw_devtest(lfw_devtest_bin):
    vs = load_bin(lfw_devtest_bin)
    assert vs.num_pairs == 1000 and int(vs.issame.sum()) == 500 and vs.images.shape == (2000, 112, 112, 3)
