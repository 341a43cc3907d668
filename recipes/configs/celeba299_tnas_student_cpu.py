"""Training a TNAS student from scratch by feature distillation at CPU scale (benchmarks/PROTOCOL.md:
64x64, batch 64, SGD 0.1 with 1 warm-up epoch and linear decay, 20 epochs, 60-minute cap).

    facenas search tnas.train recipes/configs/celeba299_tnas_student_cpu.py              # searched student
    facenas search tnas.train recipes/configs/celeba299_tnas_student_cpu.py --set uniform_ratio=0.5 \\
        --output work_dirs/celeba299_tnas_uniform_cpu                                   # uniform, same FLOPs
    facenas search tnas.train recipes/configs/celeba299_tnas_student_cpu.py --set uniform_ratio=0.5 \\
        --set "distill={'distill_weight': 0, 'margin_weight': 1}" \\
        --output work_dirs/celeba299_tnas_margin_cpu                                    # no teacher

The margin head fields (ArcFace, s=64) are the protocol's; they are used only when
``margin_weight`` > 0.
"""
import os

from facenas.recipes.configs._celeba299_cpu import protocol_config

#: the TNAS space of celeba299_tnas_search_cpu.py (for --uniform-ratio)
space = {"base": "r18", "width_mult": 0.5, "input_size": 64, "embedding_size": 128}
#: the searched architecture
arch = os.environ.get("FACENAS_TNAS_ARCH", "work_dirs/celeba299_tnas_search_cpu/search/arch.json")
#: pure feature distillation (L2 distance of the embeddings, Eq. 2) from the teacher
distill = {
    "teacher": os.environ.get("FACENAS_TNAS_TEACHER", "work_dirs/celeba299_tnas_teacher_cpu/best.pt"),
    "distill_weight": 1.0,
    "margin_weight": 0.0,
}

config = protocol_config()
config.network = arch
