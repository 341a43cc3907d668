"""One line, no traceback (issue 18, items 4 and 8): environment errors (a full disk, a read-only or
unwritable folder) exit 3 naming the path and the errno; bad recipes, a file given as the output
folder, a missing model and a zero batch size exit 2; atomic writes honour the umask."""
from __future__ import annotations

import errno
import io
import os
import stat

import pytest
import torch

from facenas.cli import main
from facenas.errors import EnvironmentFailure, describe_os_error
from facenas.utils import io as fio


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# -- environment errors: one path from the CLI, exit 3 ------------------------------------------
@pytest.mark.parametrize("code,name", [(errno.ENOSPC, "ENOSPC"), (errno.EDQUOT, "EDQUOT"), (errno.EIO, "EIO")])
def test_a_full_disk_while_writing_is_one_line_with_exit_3(tmp_path, monkeypatch, capsys, code, name):
    def full(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fio.os, "fsync", full)
    target = tmp_path / "space.json"
    assert main(["nni", "space", "toy", "--output", str(target)]) == 3
    err = _one_line(capsys)
    assert err.startswith("facenas nni: error: ") and str(target) in err and name in err
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("code,name,fix", [(errno.EROFS, "EROFS", "read-only"), (errno.EACCES, "EACCES", "permission")])
def test_a_read_only_or_unwritable_folder_is_one_line_with_exit_3(tmp_path, monkeypatch, capsys, code, name, fix):
    def refuse(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), os.path.join(dir, ".space.json.XXXXXXXX.tmp"))

    monkeypatch.setattr(fio.tempfile, "mkstemp", refuse)
    assert main(["nni", "space", "toy", "--output", str(tmp_path / "space.json")]) == 3
    err = _one_line(capsys)
    assert name in err and str(tmp_path) in err and fix in err.lower()


def test_torch_save_on_a_full_disk_says_enospc_not_unexpected_pos(tmp_path, monkeypatch):
    """torch.save turns the write's OSError into RuntimeError('... unexpected pos ...'); the writer keeps it."""
    real_fdopen = os.fdopen

    class FillsUp(io.RawIOBase):
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, data):
            if self.written + len(data) > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.fh.write(data)

        def flush(self):
            self.fh.flush()

        def fileno(self):
            return self.fh.fileno()

        def close(self):
            self.fh.close()

    monkeypatch.setattr(fio.os, "fdopen", lambda fd, mode: FillsUp(real_fdopen(fd, mode)))
    target = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError) as info:
        fio.atomic_torch_save({"w": torch.zeros(10_000)}, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert isinstance(describe_os_error(info.value), EnvironmentFailure)
    assert not [p for p in tmp_path.iterdir()]  # neither the file nor its temporary sibling


def test_a_missing_input_path_stays_a_user_error():
    err = describe_os_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y"))
    assert err.exit_code == 2 and "/x/y" in str(err) and "ENOENT" in str(err)


# -- item 8: the umask, as for ordinary files ---------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        fio.write_json(tmp_path / "a.json", {"x": 1})
        fio.atomic_torch_save({"x": torch.zeros(2)}, tmp_path / "b.pt")
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    want = stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.json", "b.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == want, name


def test_stale_temp_files_are_recognised_by_name_only(tmp_path):
    for name in (".checkpoint.pt.ab_cd123.tmp", ".final.json.xyzw1234.tmp", "keep.tmp", ".keep.tmp", "a.pt"):
        (tmp_path / name).write_text("x")
    assert sorted(fio.remove_stale_temp_files(tmp_path)) == [".checkpoint.pt.ab_cd123.tmp", ".final.json.xyzw1234.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.tmp", "a.pt", "keep.tmp"]


# -- user errors: one line, exit 2 --------------------------------------------------------------
RECIPE_OK = "from facenas.plugins.engine import TrainConfig\nconfig = TrainConfig()\nconfig.rec = 'synthetic'\n"


@pytest.mark.parametrize("text,target,expected", [
    ("config = {\n", "recipe.py", "line 1: the recipe does not compile"),
    ("import nonexistent_module_xyz\n", "recipe.py", "install 'nonexistent_module_xyz'"),
    ("from facenas.plugins.engine import TrainConfig\nconfig = TrainConfig()\nconfig.lr = 1 / 0\n", "recipe.py",
     "line 3: the recipe failed while running: ZeroDivisionError"),
    (None, "nonexistent_recipe_module", "neither a file nor a Python source module"),
    (None, "os", "(it is frozen)"),
    (None, "a.b.c", "No module named 'a'"),
    (None, "json", "the recipe failed while running"),
    (None, "no/such/recipe.py", "is not a file"),
])
def test_recipes_that_do_not_load_are_one_line(tmp_path, monkeypatch, capsys, text, target, expected):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / target).write_text(text)
    assert main(["train", target]) == 2
    assert expected in _one_line(capsys)


def test_output_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "recipe.py").write_text(RECIPE_OK)
    (tmp_path / "taken").write_text("a file")
    assert main(["train", str(tmp_path / "recipe.py"), "--output", str(tmp_path / "taken"), "--set", "device='cpu'"]) == 2
    assert "is a file, not a folder" in _one_line(capsys)


def test_latency_of_a_missing_model_file_is_one_line(tmp_path, capsys):
    for model in ("missing.onnx", "missing.tflite", "missing.pt"):
        assert main(["latency", "--model", str(tmp_path / model)]) == 2
        assert "missing" in _one_line(capsys)


def test_eval_batch_size_zero_is_one_line(tmp_path, capsys):
    from facenas.adapters.insightface.backbones import get_model, save_backbone
    from facenas.adapters.insightface.evaluate import VerificationEvaluator
    from facenas.errors import ConfigError

    net = get_model("mbf", num_features=16, width_mult=0.125, input_size=32)
    save_backbone(net, tmp_path / "m.pt", network=net.facenas_network, embedding_size=16)
    for size in ("0", "-4"):
        assert main(["eval", "--model", str(tmp_path / "m.pt"), "--bin", str(tmp_path / "m.pt"),
                     "--batch-size", size]) == 2
        assert f"batch_size={size}" in _one_line(capsys)
    with pytest.raises(ConfigError):
        VerificationEvaluator({}, batch_size=0)
