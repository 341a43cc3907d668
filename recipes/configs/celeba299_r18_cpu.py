"""CPU-scale IResNet baseline: arcface_torch's ``r18`` uniformly narrowed to a quarter width, 64x64, on celeba299.

    facenas train recipes/configs/celeba299_r18_cpu.py
"""
from facenas.recipes.configs._celeba299_cpu import protocol_config

config = protocol_config()
config.network = "r18"
config.network_kwargs = {"width_mult": 0.25}
