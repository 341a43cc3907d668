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
# 4. each method's GPU experiment file (recipes/nni/{tnas,ofa,enas}_gpu.yml) at small scale on one GPU: the same
#    files, their `variables` overridden by FACENAS_VAR_* (celeba299, 1-2 epochs, a handful of subnets /
#    candidates), each checked with `facenas nni check` and run by `facenas nni run-local` (the pipeline without
#    nnictl) under a 160 s limit, about 8 minutes in all; the teacher / supernet run under torchrun inside
#    their trial (nproc_per_node=1); the ENAS search's shared child and OFA's accuracy set / final subnets
#    (enas.search, ofa.evaluate: `device: ${vars.device}` = cuda) run on the GPU too, counted in the log
#    ("device lines"). Skip passes 1-3 with GPU_CHECK_ONLY=files.
# Recorded run (2026-12-05, one H100, torch 2.11.0+cu130): benchmarks/results/gpu_check.log.
set -u
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
L=$OUT/log.txt
export PYTHONUNBUFFERED=1
{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; } >> "$L" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >> "$L" 2>&1
if [ "${GPU_CHECK_ONLY:-}" != "files" ]; then
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
fi

# 4. the GPU experiment files at small scale
D=$(python3 -c "from facenas.utils.paths import shared_data_dir; print(shared_data_dir())")
python3 -m facenas.cli nni check recipes/nni/tnas_gpu.yml recipes/nni/ofa_gpu.yml recipes/nni/enas_gpu.yml >> "$L" 2>&1
echo "nni check rc=$?" >> "$L"
small() {  # small NAME VAR=VALUE...: run recipes/nni/NAME_gpu.yml with those FACENAS_VAR_* overrides
    local name=$1; shift
    local s; s=$(date +%s)
    env FACENAS_VAR_DATA="$D/celeba299" FACENAS_VAR_NUM_CLASSES=299 FACENAS_VAR_NUM_IMAGE=6284 FACENAS_VAR_WORKERS=8 "$@" \
        timeout 160 python3 -m facenas.cli nni run-local "recipes/nni/${name}_gpu.yml" --output "$OUT/${name}_gpu" \
        > "$OUT/${name}_gpu.log" 2>&1
    echo "${name}_gpu rc=$? wall=$(( $(date +%s) - s ))s" >> "$L"
    tail -n 25 "$OUT/${name}_gpu.log" >> "$L"
}
small tnas FACENAS_VAR_VAL_TARGETS='[lfw_devtest]' FACENAS_VAR_BASE=r18 FACENAS_VAR_WIDTH_MULT=0.5 \
    FACENAS_VAR_TEACHER_EPOCHS=2 FACENAS_VAR_SEARCH_EPOCHS=1 FACENAS_VAR_STUDENT_EPOCHS=1
small ofa FACENAS_VAR_SEARCH_VAL="$D/lfw_devtest.bin" FACENAS_VAR_SEARCH_TARGET=lfw_devtest_auc \
    FACENAS_VAR_FINAL_VAL="$D/lfw.bin" FACENAS_VAR_FULL_EPOCHS=2 FACENAS_VAR_SHRINK_EPOCHS=1 \
    FACENAS_VAR_ACCURACY_SET=8 FACENAS_VAR_BOUND=100000 FACENAS_VAR_CALIBRATION_IMAGES=256
small enas FACENAS_VAR_SEARCH_DATA="$D/celeba299" FACENAS_VAR_VAL_TARGETS='[lfw_devtest]' FACENAS_VAR_SEARCH_EPOCHS=1 FACENAS_VAR_SEARCH_STEPS_PER_EPOCH=10 \
    FACENAS_VAR_BATCH_SIZE=64 FACENAS_VAR_CANDIDATES=4 FACENAS_VAR_TOP_K=1 FACENAS_VAR_RETRAIN_EPOCHS=1 \
    FACENAS_VAR_LATENCY=null FACENAS_VAR_REWARD='{}'
# the searches' own steps on the GPU: one line per enas.search / ofa.evaluate trial that ran on cuda
echo "device lines: enas.search $(grep -c 'ENAS child on cuda' "$OUT/enas_gpu.log") (expect 1)," \
    "ofa.evaluate $(grep -c 'ofa.evaluate: subnet on cuda' "$OUT/ofa_gpu.log") (expect 10: the accuracy set's 8, the final 2)" >> "$L"
