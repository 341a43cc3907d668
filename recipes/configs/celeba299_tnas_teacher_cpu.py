"""TNAS teacher at CPU scale: the full-width version of the TNAS student space (arcface_torch ``r18`` at half
width, 214 MFLOPs at 64x64), trained by the CPU-scale protocol (benchmarks/PROTOCOL.md) on celeba299.

    facenas train recipes/configs/celeba299_tnas_teacher_cpu.py     # -> work_dirs/celeba299_tnas_teacher_cpu/best.pt
"""
from facenas.recipes.configs._celeba299_cpu import protocol_config

config = protocol_config()
config.network = "r18"
config.network_kwargs = {"width_mult": 0.5}
