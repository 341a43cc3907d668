"""CPU-scale AirFace baseline: the AirFace backbone (Table 1, CBAM with 1+tanh gates) at half width and a
third of the depth, 64x64, on celeba299.

    facenas train recipes/configs/celeba299_airface_cpu.py
"""
from facenas.recipes.configs._celeba299_cpu import protocol_config

config = protocol_config()
config.network = "airface"
config.network_kwargs = {"width_mult": 0.5, "depth_mult": 0.34}
