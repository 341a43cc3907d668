"""Every bad-input case of the issue: one clear message naming the file, the record/pair and what
was expected; exit code 2 from the CLI, never a traceback."""
from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from facenas.adapters.insightface import recordio as rio
from facenas.adapters.insightface.binset import write_bin
from facenas.cli import main


def _jpeg(value: int) -> bytes:
    return cv2.imencode(".jpg", np.full((16, 16, 3), value, np.uint8))[1].tobytes()


def _rec_folder(path: Path) -> Path:
    """A valid InsightFace folder: header, 2 images of identity 0, its identity record."""
    rio.write_insightface_rec(path, [_jpeg(10), _jpeg(20)], [0, 0], (16, 16))
    return path


def truncated_rec(tmp: Path) -> Path:
    folder = _rec_folder(tmp / "rec")
    raw = (folder / "train.rec").read_bytes()
    (folder / "train.rec").write_bytes(raw[: rio.read_index(folder / "train.idx")[3] + 12])  # inside the last record
    return folder


def wrong_magic(tmp: Path) -> Path:
    folder = _rec_folder(tmp / "rec")
    raw = bytearray((folder / "train.rec").read_bytes())
    offset = rio.read_index(folder / "train.idx")[1]
    raw[offset:offset + 4] = b"JUNK"
    (folder / "train.rec").write_bytes(bytes(raw))
    return folder


def idx_past_end(tmp: Path) -> Path:
    folder = _rec_folder(tmp / "rec")
    lines = (folder / "train.idx").read_text().splitlines()
    lines[2] = "2\t999999"
    (folder / "train.idx").write_text("\n".join(lines) + "\n")
    return folder


def idx_missing_key(tmp: Path) -> Path:
    folder = _rec_folder(tmp / "rec")
    lines = [l for l in (folder / "train.idx").read_text().splitlines() if not l.startswith("2\t")]
    (folder / "train.idx").write_text("\n".join(lines) + "\n")
    return folder


def bin_not_pickle(tmp: Path) -> Path:
    (tmp / "x.bin").write_bytes(b"GIF89a not a pickle at all")
    return tmp / "x.bin"


def bin_wrong_structure(tmp: Path) -> Path:
    (tmp / "x.bin").write_bytes(pickle.dumps({"images": [_jpeg(1)], "issame": [True]}))
    return tmp / "x.bin"


def bin_odd_count(tmp: Path) -> Path:
    (tmp / "x.bin").write_bytes(pickle.dumps(([_jpeg(1), _jpeg(2), _jpeg(3)], [True])))
    return tmp / "x.bin"


def bin_undecodable(tmp: Path) -> Path:
    write_bin(tmp / "x.bin", [_jpeg(1), _jpeg(2), _jpeg(3), b"\xff\xd8 broken jpeg"], [True, False])
    return tmp / "x.bin"


def bin_runs_code(tmp: Path) -> Path:
    (tmp / "x.bin").write_bytes(b"\x80\x02cposix\nsystem\nX\x0b\x00\x00\x00touch PWNED\x85R.")
    return tmp / "x.bin"


def empty_image_folder(tmp: Path) -> Path:
    (tmp / "faces" / "person_a").mkdir(parents=True)
    (tmp / "faces" / "person_a" / "notes.txt").write_text("no images here")
    return tmp / "faces"


CASES = {
    # case: (builder, file named in the message, fragments that must appear)
    "truncated_rec": (truncated_rec, "train.rec", ["record 3", "cut off", "truncated"]),
    "wrong_magic": (wrong_magic, "train.rec", ["record 1", "wrong magic number", "expected 0xced7230a"]),
    "idx_offset_past_end": (idx_past_end, "train.idx", ["key 2", "past the end"]),
    "idx_missing_key": (idx_missing_key, "train.idx", ["keys 1..2", "missing from the index", "[2]"]),
    "bin_not_a_pickle": (bin_not_pickle, "x.bin", ["not a pickle", "(bins, issame)"]),
    "bin_wrong_structure": (bin_wrong_structure, "x.bin", ["holds a dict", "expected a 2-tuple (bins, issame)"]),
    "bin_odd_image_count": (bin_odd_count, "x.bin", ["3 images is an odd count", "2 images each"]),
    "bin_undecodable_image": (bin_undecodable, "x.bin", ["image 3 (pair 1)", "not a decodable image"]),
    "bin_crafted_to_run_code": (bin_runs_code, "x.bin", ["refusing to load", "posix.system"]),
    "image_folder_without_identities": (empty_image_folder, "faces", ["no identities with images",
                                                                      "one sub-folder per identity"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_with_one_clear_message_and_exit_code_2(case, tmp_path, capsys, monkeypatch):
    build, filename, fragments = CASES[case]
    monkeypatch.chdir(tmp_path)
    target = build(tmp_path)
    code = main(["data", "info", str(target), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # no partial JSON
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facenas data: error: "), captured.err
    assert filename in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (tmp_path / "PWNED").exists()
