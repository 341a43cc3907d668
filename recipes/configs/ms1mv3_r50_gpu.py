"""arcface_torch's ``ms1mv3_r50`` recipe: IResNet-50 + ArcFace on MS1MV3, 20 epochs, fp16.

    torchrun --nproc_per_node=8 -m facenas.cli train recipes/configs/ms1mv3_r50_gpu.py
"""
from facenas.recipes.configs._gpu import gpu_config

config = gpu_config("ms1mv3")
config.network = "r50"
