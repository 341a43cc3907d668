"""arcface_torch's ``ms1mv3_mbf`` recipe: MobileFaceNet + ArcFace on MS1MV3, 40 epochs, fp16.

    torchrun --nproc_per_node=8 -m facenas.cli train recipes/configs/ms1mv3_mbf_gpu.py
"""
from facenas.recipes.configs._gpu import gpu_config

config = gpu_config("ms1mv3")
config.network = "mbf"
config.weight_decay = 1e-4
config.num_epoch = 40
