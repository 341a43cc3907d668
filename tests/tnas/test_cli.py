"""``facenas search tnas [--stage train]`` from recipe files, with --set overrides and --json output."""
from __future__ import annotations

import json

import pytest

from facenas.cli import main
from facenas.plugins.tnas.space import TEST_SPACE

from .conftest import random_teacher


def test_search_then_train_from_the_command_line(synthetic_data, tmp_path, capsys):
    search_recipe = tmp_path / "search.py"
    search_recipe.write_text(
        "from facenas.plugins.tnas.search import TnasSearchConfig\n"
        f"config = TnasSearchConfig(space={dict(TEST_SPACE)!r}, teacher={random_teacher()!r}, rec={str(synthetic_data)!r},\n"
        "                          batch_size=16, num_epoch=3, target_width_ratio=0.6, arch_lr=0.1, device='cpu')\n")
    assert main(["-q", "search", "tnas", str(search_recipe), "--set", "num_epoch=1", "--output",
                 str(tmp_path / "s"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["epochs"] == 1 and out["arch_path"] == str(tmp_path / "s" / "search" / "arch.json")
    assert out["arch"] == json.loads((tmp_path / "s" / "search" / "arch.json").read_text()) and out["stage"] == "tnas.search"
    assert json.loads((tmp_path / "s" / "final.json").read_text())["arch"] == out["arch"]
    assert json.loads((tmp_path / "s" / "search" / "final.json").read_text())["arch"] == out["arch"]

    student_recipe = tmp_path / "student.py"
    student_recipe.write_text(
        "from facenas.plugins.engine import TrainConfig\n"
        f"space = {dict(TEST_SPACE)!r}\n"
        f"distill = {{'teacher': {random_teacher()!r}}}\n"
        f"config = TrainConfig(rec={str(synthetic_data)!r}, image_size=32, embedding_size=16, batch_size=16, num_epoch=1,\n"
        "                     warmup_epoch=0, num_workers=0, device='cpu', verbose=10000, network='unused')\n")
    assert main(["-q", "search", "tnas.train", str(student_recipe), "--set", f"arch={tmp_path / 's'}", "--output",
                 str(tmp_path / "t"), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["mflops"] == pytest.approx(out["mflops"]) and trained["teacher_images_computed"] > 0
    assert main(["-q", "search", "tnas", str(student_recipe), "--stage", "tnas.train", "--set", "uniform_ratio=0.5",
                 "--set", "distill={'distill_weight': 0, 'margin_weight': 1}", "--output", str(tmp_path / "m"), "--json"]) == 0
    margin = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "teacher_images_computed" not in margin
    assert json.loads((tmp_path / "m" / "arch.json").read_text())["sample"]["stem/width_ratio"] == 0.5


def test_cli_errors_exit_2(tmp_path, capsys):
    recipe = tmp_path / "student.py"
    recipe.write_text("from facenas.plugins.engine import TrainConfig\nconfig = TrainConfig(rec='synthetic')\n")
    assert main(["search", "tnas", str(recipe), "--stage", "train", "--set", "distill={'teacher': 't.pt'}"]) == 2
    assert "arch" in capsys.readouterr().err
    assert main(["search", "tnas.trian", str(recipe)]) == 2
    assert "did you mean 'tnas.train'" in capsys.readouterr().err
    assert main(["search", "tnsa", str(recipe)]) == 2
    assert "unknown method 'tnsa'; did you mean 'tnas'" in capsys.readouterr().err
