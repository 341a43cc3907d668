"""ENAS retraining (Algorithm 2) at CPU scale: the shared CPU-scale protocol, the network given by
the searched architecture (the ``enas.retrain`` stage's ``arch`` replaces ``network``).

    facenas search enas.retrain recipes/configs/celeba299_enas_retrain_cpu.py --set arch=work_dirs/enas/search/top1.json
"""
from facenas.recipes.configs._celeba299_cpu import protocol_config

config = protocol_config()
