"""The GPU experiment files run end to end, at toy scale on the CPU: the same files, their ``variables``
overridden through ``FACENAS_VAR_*`` (the teacher and the supernet still go through torchrun inside their
trial). The GPU-scale pass is ``benchmarks/gpu_check.sh`` (pass 4)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _common(data: Path) -> dict[str, str]:
    return {"DATA": str(data), "NUM_CLASSES": "24", "NUM_IMAGE": "240", "BATCH_SIZE": "16", "DEVICE": "cpu",
            "WORKERS": "0", "VAL_TARGETS": f"[{data / 'val.bin'}]"}


OVERRIDES = {
    "tnas_gpu.yml": {"IMAGE_SIZE": "32", "BASE": "r18", "WIDTH_MULT": "0.125", "TEACHER_EPOCHS": "1",
                     "SEARCH_EPOCHS": "1", "STUDENT_EPOCHS": "1"},
    "ofa_gpu.yml": {"IMAGE_SIZE": "64", "EMBEDDING_SIZE": "32", "FULL_EPOCHS": "1", "SHRINK_EPOCHS": "0.5",
                    "ACCURACY_SET": "4", "BOUND": "100000", "CALIBRATION_IMAGES": "32", "SEARCH_TARGET": "val_auc"},
    "enas_gpu.yml": {"IMAGE_SIZE": "32", "SPACE_CONFIG": "{num_cells: 3, num_nodes: 3, channels: 8, stem_stride: 1, "
                                                         "reductions: [1, 2], input_size: 32, embedding_size: 16}",
                     "SEARCH_EPOCHS": "1", "SEARCH_STEPS_PER_EPOCH": "2", "CANDIDATES": "2", "TOP_K": "1",
                     "RETRAIN_EPOCHS": "1", "LATENCY": "null", "REWARD": "{}", "SEARCH_THREADS": "1"},
}


#: where each step of a file takes ``${vars.device}`` (a path into its trials' ``params``): every step that runs a network
DEVICE_PARAMS = {
    "enas_gpu.yml": {"search": ("config", "device"), "retrain": ("device",)},
    "ofa_gpu.yml": {"supernet": ("config", "device"), "evaluate": ("device",), "final": ("device",)},
}


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_gpu_file_runs_at_toy_scale_on_the_cpu(tmp_path, name, monkeypatch):
    from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset
    from facenas.adapters.nni.launch import load_yaml
    from facenas.adapters.nni.pipeline import pipeline_config_of, run_pipeline_locally

    data = tmp_path / "data"  # 64 px: the OFA space's smallest sensible input
    write_synthetic_dataset(data, SyntheticConfig(num_identities=24, images_per_identity=10, val_identities=20,
                                                  val_pairs=120, image_size=64, seed=0))
    values = {**_common(data), "SEARCH_DATA": str(data), "SEARCH_VAL": str(data / "val.bin"),
              "FINAL_VAL": str(data / "val.bin"), **OVERRIDES[name]}
    for key, value in values.items():
        monkeypatch.setenv(f"FACENAS_VAR_{key}", value)
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.chdir(REPO)  # trialCodeDirectory: recipe paths are relative to the repository root
    pipeline = pipeline_config_of(load_yaml(REPO / "recipes" / "nni" / name)["tuner"])
    sched = run_pipeline_locally(pipeline, tmp_path / "run")
    assert sched.status() == "finished", (tmp_path / "run").as_posix()
    torchrun_logs = list((tmp_path / "run").rglob("torchrun.log"))
    assert bool(torchrun_logs) == (name != "enas_gpu.yml")  # the teacher / supernet ran under torchrun
    import json

    for step, path in DEVICE_PARAMS.get(name, {}).items():  # the trials were given the file's device
        trials = sorted((tmp_path / "run" / step).glob("*/params.json"))
        assert trials, step
        for trial in trials:
            value = json.loads(trial.read_text())["params"]
            for key in path:
                value = value[key]
            assert value == values["DEVICE"], (trial, value)
