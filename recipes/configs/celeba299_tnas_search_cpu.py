"""TNAS search at CPU scale (benchmarks/PROTOCOL.md data and input): widths (ratios 0.3..1.0) and depths
(1-2 blocks per stage) of a half-width r18 student, distilled from the teacher of
``celeba299_tnas_teacher_cpu.py``, with the FLOPs target of the uniformly narrowed student at
ratio 0.5 (= arcface_torch r18 at quarter width, 54.6 MFLOPs at 64x64).

    facenas search tnas recipes/configs/celeba299_tnas_search_cpu.py   # -> work_dirs/celeba299_tnas_search_cpu/search/arch.json

Paper settings (TNAS Sec. "Searching") except, stated: 8 search epochs over half of celeba299
(the other half drives the architecture steps, ~390 iterations in all), so the architecture
learning rate is 0.05 instead of 1e-3 (the paper's searches take tens of thousands of steps);
the cost loss below the band is TAS's -log E (see docs/tnas.md).
"""
import os

from facenas.plugins.tnas.search import TnasSearchConfig
from facenas.utils.paths import shared_data_dir

config = TnasSearchConfig()
config.space = {"base": "r18", "width_mult": 0.5, "input_size": 64, "embedding_size": 128}
config.teacher = os.environ.get("FACENAS_TNAS_TEACHER", "work_dirs/celeba299_tnas_teacher_cpu/best.pt")
config.rec = str(shared_data_dir() / "celeba299")
config.val_fraction = 0.5
config.batch_size = 64
config.num_epoch = 8
config.lr = 0.1
config.arch_lr = 0.05
config.arch_weight_decay = 1e-3
config.cost_lambda = 2.0
config.tolerance = 0.05
config.target_width_ratio = 0.5
config.tau_max = 10.0
config.tau_min = 0.1
config.num_sampled = 2
config.threads = 2
config.num_workers = 1
config.seed = 2048
config.checkpoint_every = 50
