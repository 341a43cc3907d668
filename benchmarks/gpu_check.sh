#!/usr/bin/env bash
# GPU paths of facenas on one CUDA GPU, and the OFA face supernet of bench_ofa trained there.
#
#   bash benchmarks/gpu_check.sh OUT_DIR        # facenas installed; data in $FACENAS_SHARED_DATA or $FACENAS_SHARED_DATA
#
# 1. the training engine on CUDA with fp16=True (AMP + GradScaler), MobileFaceNet recipe, 2 epochs;
# 2. the same under `torchrun --nproc_per_node=1` (the launcher; one process, so no process group: NCCL DDP needs
#    two or more GPUs, `--nproc_per_node=N` on such a machine);
# 3. bench_ofa's supernet step on the GPU (--only supernet --device cuda): all six progressive-shrinking
#    phases, 28 epochs; its files (supernet/supernet.pt, head.pt, final.json) go to OUT_DIR/ofa and the rest of
#    bench_ofa runs on the target CPU with `--artifacts OUT_DIR/ofa`.
# Recorded run (2026-12-05, one H100, torch 2.11.0+cu130): benchmarks/results/gpu_check.log.
set -u
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
L=$OUT/log.txt
export PYTHONUNBUFFERED=1
{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; } >> "$L" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >> "$L" 2>&1
T="-m facenas.cli train recipes/configs/celeba299_mbf_cpu.py --set device=cuda --set num_workers=8 --set test_targets=[] --set num_epoch=2 --set fp16=True"
s=$(date +%s); timeout 300 python3 $T --set output="$OUT/mbf_amp" >> "$L" 2>&1
echo "mbf_amp rc=$? wall=$(( $(date +%s) - s ))s" >> "$L"; cat "$OUT/mbf_amp/final.json" >> "$L" 2>&1
s=$(date +%s); timeout 300 torchrun --standalone --nproc_per_node=1 $T --set output="$OUT/mbf_torchrun" >> "$L" 2>&1
echo "mbf_torchrun rc=$? wall=$(( $(date +%s) - s ))s" >> "$L"; cat "$OUT/mbf_torchrun/final.json" >> "$L" 2>&1
PH='{"full":14,"kernel":4,"depth_1":2,"depth_2":3,"expand_1":2,"expand_2":3}'
s=$(date +%s)
python3 -m benchmarks.bench_ofa --artifacts "$OUT/ofa" --only supernet --device cuda --threads 4 --workers 8 \
    --supernet-minutes 30 --phase-epochs "$PH" > "$OUT/ofa_supernet.log" 2>&1
echo "supernet rc=$? wall=$(( $(date +%s) - s ))s" >> "$L"
