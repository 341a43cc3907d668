"""arcface_torch's ``ms1mv3_r100`` recipe: IResNet-100 + ArcFace on MS1MV3, 20 epochs, fp16.

    torchrun --nproc_per_node=8 -m facenas.cli train recipes/configs/ms1mv3_r100_gpu.py
"""
from facenas.recipes.configs._gpu import gpu_config

config = gpu_config("ms1mv3")
config.network = "r100"
