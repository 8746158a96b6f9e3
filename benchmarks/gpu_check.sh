#!/usr/bin/env bash
# One prepared GPU check, sized for a single call of at most 9 minutes on one H100-class GPU:
#   1. the `cuda` tests (tests/test_cuda.py: fp32/bf16/fp16 steps, Grad-CAM and MAGI's
#      alignment against the CPU and scipy, kill-and-resume, channels_last);
#   2. benchmarks/step_cost.py on CUDA, fp32 and bf16 (every method, ratios against the
#      Baseline, peak memory);
#   3. the paper-scale key rows of Table 1 (Baseline, Consensus, MAGI, Oracle; 224 px,
#      100/2400/2400 images, 30 epochs, seeds 0-2) with esx sweep, then esx report;
#   4. Decoy-MNIST: benchmarks/decoy_step.py (esx's RRR step against plain PyTorch's) and
#      the recipes/decoy_mnist rows (both models) for training seed 0 x data draws 0-2, then
#      esx report.
# Every output goes under OUT. With --tiny the same steps run on the CPU at toy sizes
# (the cuda tests then skip), so CI keeps the script from rotting.
# Not yet run on a GPU: each run renders the phantom's 4,900 images on the CPU (about
# 0.1 s each at 224 px; 12 loader workers share the work), which may not fit 9 minutes
# with 3 seeds; SEEDS=0 runs one seed per row.
#
#   bash benchmarks/gpu_check.sh OUT            # on a GPU
#   bash benchmarks/gpu_check.sh OUT --tiny     # anywhere, a minute or two
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash benchmarks/gpu_check.sh OUT [--tiny]}
tiny=${2:-}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$out/timeline.txt"; }

if [ "$tiny" = "--tiny" ]; then
  device=cpu; seeds=0
  cost=(--size 64 --batch 4 --repeats 1 --warmup 0 --device cpu --no-memory)
  rows=(--set data.params.image_size=32 --set data.params.n_train=8 --set data.params.n_val=8
        --set data.params.n_test=8 --set train.epochs=1 --set train.batch_size=4
        --set backbone.params.arch=test_resnet)
  precisions=(fp32)
  decoy=(--set data.params.n_train=100 --set data.params.n_val=50 --set data.params.n_test=50
         --set train.epochs=1)
  decoy_cost=(--repeats 2 --warmup 0 --device cpu)
else
  device=cuda; seeds=${SEEDS:-0-2}
  cost=(--size 224 --batch 16 --repeats 20 --warmup 3 --device cuda)
  rows=(--set data.params.image_size=224 --set data.params.n_val=2400
        --set data.params.n_test=2400 --set backbone.params.output_stride=null
        --set train.epochs=30 --set train.eval_batch_size=256 --set train.num_workers=12)
  precisions=(fp32 bf16)
  decoy=()
  decoy_cost=(--repeats 50 --warmup 5 --device cuda)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" || true
fi
stamp "$(python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())")"

stamp "cuda tests"
python -m pytest -q -m cuda -rs tests/test_cuda.py 2>&1 | tee "$out/cuda_tests.log"

for precision in "${precisions[@]}"; do
  stamp "step cost, $precision"
  python benchmarks/step_cost.py "${cost[@]}" --precision "$precision" --json \
    > "$out/step_cost_${device}_${precision}.json"
done

stamp "paper-scale key rows"
esx sweep recipes/table1/a_baseline.yaml recipes/table1/a_consensus.yaml \
  recipes/table1/a_magi.yaml recipes/table1/oracle.yaml --seeds "$seeds" --out "$out/paper" \
  --set device=$device "${rows[@]}" 2>&1 | tee "$out/sweep.log"
esx report "$out/paper" > /dev/null
cp "$out/paper/report.md" "$out/report.md"  # the 8 top-level files (with decoy_report.md) are what a lent GPU returns

stamp "decoy-mnist"
metrics=accuracy,accuracy_decoy_disagrees,worst_group_accuracy
for rows in decoy_mnist decoy_mnist/cnn; do  # Ross et al.'s MLP, then CDEP's CNN
  dir="$out/${rows//\//_}"
  mkdir -p "$dir"
  esx sweep "recipes/$rows" --seeds 0 --vary data.params.seed=0-2 --out "$dir" \
    --set device=$device "${decoy[@]}" 2>&1 | tee "$dir/sweep.log"
  esx report "$dir" --metrics $metrics > /dev/null
done
{ echo '# esx RRR step against a plain PyTorch RRR step (benchmarks/decoy_step.py)'
  for r in rrr_oracle cnn/rrr_oracle; do
    python benchmarks/decoy_step.py --recipe "recipes/decoy_mnist/$r.yaml" "${decoy_cost[@]}"
  done
  echo; cat "$out/decoy_mnist/report.md" "$out/decoy_mnist_cnn/report.md"; } > "$out/decoy_report.md"
stamp "done"
