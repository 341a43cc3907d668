"""CPU-scale MobileFaceNet baseline: arcface_torch's ``mbf`` at half width, 64x64, on celeba299.

    facenas train recipes/configs/celeba299_mbf_cpu.py     # ~15-20 min on 2 cores; LFW in final.json
"""
from facenas.recipes.configs._celeba299_cpu import protocol_config

config = protocol_config()
config.network = "mbf"
config.network_kwargs = {"width_mult": 0.5}
