#!/usr/bin/env bash
# Every GPU check of the project in one call, for a lent machine with minutes of GPU time: the
# versions, the CUDA tests (-m cuda), the batched-eigh comparison (bench_gpu_eigh.py) and the
# scripts of `make bench-gpu`, each under its own time limit so one slow part cannot eat the rest.
# It uses the machine's python3 and torch as they are (it installs nothing from the network):
# wheels in .whl/ (e.g. timm at the pinned version) are installed into /tmp/site first.
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh     # log and results.tgz land in $OUT
set -u
OUT=${OUT:-results/gpu-session}
PY=${PY:-python3}
mkdir -p "$OUT"
RESULTS=$(mktemp -d)
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 PYTHONPATH="$PWD"
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site:$PWD"
fi
LOG="$OUT/log.txt"
step() {  # step SECONDS TITLE COMMAND...
    local limit=$1 title=$2; shift 2
    echo "=== $title (limit ${limit}s) $(date +%T)" | tee -a "$LOG"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "=== $title: exit ${PIPESTATUS[0]} $(date +%T)" | tee -a "$LOG"
}
step 20 versions bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv; \
  $PY -c 'import torch, timm, gcp; print(torch.__version__, torch.version.cuda, timm.__version__, \
  torch.cuda.get_device_name(), gcp.eigh_solver.backend_info())'"
step "${TESTS_S:-90}" "cuda tests" $PY -m pytest -q -p no:cacheprovider -m cuda tests --continue-on-collection-errors -W ignore
step "${EIGH_S:-150}" bench_gpu_eigh $PY benchmarks/bench_gpu_eigh.py --device cuda --batches 2 8 32 64 128 \
    --dims 32 48 64 128 256 --results "$RESULTS"
step 40 bench_head $PY benchmarks/bench_head.py --device cuda --batch 64 --repeats 5 --results "$RESULTS"
step 40 bench_sqrtm $PY benchmarks/bench_sqrtm.py --device cuda --repeats 3 --results "$RESULTS"
step 30 bench_train $PY benchmarks/bench_train.py --device cuda --batch 64 --rounds 3 --results "$RESULTS"
step 20 bench_approximants $PY benchmarks/bench_approximants.py --device cuda --dims 64 128 256 --repeats 3 \
    --results "$RESULTS"
step 20 bench_second_order $PY benchmarks/bench_second_order.py --device cuda --repeats 3 --results "$RESULTS"
step 30 bench_memory $PY benchmarks/bench_memory.py --device cuda --runs 1 --results "$RESULTS"
tar czf "$OUT/results.tgz" -C "$RESULTS" .
ls -l "$RESULTS" | tee -a "$LOG"
