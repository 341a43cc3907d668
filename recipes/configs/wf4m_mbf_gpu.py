"""arcface_torch's ``wf4m_mbf`` recipe: MobileFaceNet + CosFace on WebFace4M, 20 epochs, fp16.

    torchrun --nproc_per_node=8 -m facenas.cli train recipes/configs/wf4m_mbf_gpu.py
"""
from facenas.recipes.configs._gpu import gpu_config

config = gpu_config("wf4m")
config.network = "mbf"
config.weight_decay = 1e-4
