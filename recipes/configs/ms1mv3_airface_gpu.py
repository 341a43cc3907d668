"""AirFace on MS1MV3: the AirFace backbone (Table 1) with Li-ArcFace (m=0.45, s=64) and weight decay 5e-4
(AirFace Sec. 4.1), arcface_torch's MS1MV3 schedule otherwise (20 epochs), 512-d embedding.

    torchrun --nproc_per_node=8 -m facenas.cli train recipes/configs/ms1mv3_airface_gpu.py
"""
from facenas.recipes.configs._gpu import gpu_config

config = gpu_config("ms1mv3")
config.network = "airface"
config.margin_head = "li_arcface"
config.margin_list = (1.0, 0.45, 0.0)
