#!/usr/bin/env bash
# MAGI's rows of the noise curve and of question 2 (docs/benchmarks/noise_curve.md) on one
# lent GPU, in one call of at most 9 minutes. A MAGI run there takes about 7 minutes on one
# thread of the 2-core CPU that runs the other rows; on the GPU machine JOBS one-thread runs
# share the GPU (on an H200, 14 at a time, about 92 s a MAGI run, 2026-12-04). The sweeps
# go in the order that answers the most first, each stopped at
# the DEADLINE (seconds from the start; a stopped sweep loses only its unfinished runs):
#   1. the device check: the Consensus row at level 0.25 on the GPU, into its own folder
#      (noise_curve_gpu_check), to be paired with the same runs on the CPU;
#   2. both MAGI rows of the curve at levels 0.25, 0.5 (where noise costs) and 0;
#   3. both MAGI rows of question 2 (recipes/one_marker);
#   4. both MAGI rows of the curve at levels 0.75 and 1;
#   5. both MAGI rows of the energy loss's curve (recipes/noise_curve_energy), levels in
#      the same order.
# Each step is one sweep (a sweep runs its recipes one after the other, each over the
# levels in the order given), so that only a step's last runs leave GPU slots idle, not
# each level's.
# The runs already published (docs/run_metrics: the search's archives, or with DRAWS=10-14
# the confirmation's) are unpacked first, so the sweeps skip them and the GPU's time goes
# to the runs nobody has made. The runs it finishes, and only those, come back as
# OUT/noise_curve_gpu.tar.gz (their small files: metrics, history, predictions, recipe,
# log), laid out as this machine's runs/ folder; unpack it there and the sweeps on this
# machine skip those runs:
#   tar xzf noise_curve_gpu.tar.gz -C runs
# Then report as the page says. The runs the deadline stopped after an epoch come back
# whole (their checkpoints too) as OUT/noise_curve_gpu_stopped.tar.gz.N (parts to join
# with cat), for the next call's PREVIOUS only, which resumes them where they stopped;
# not for runs/ here, where a sweep would finish them on this CPU, another device
# mid-run. OUT/timeline.txt times each step; OUT/sweeps.log is the sweeps' output.
# Where esx is not installed (a bare GPU machine), the script installs it without an
# index: the packages that machine lacks travel as wheels in .whl/ (see
# docs/lab/2026-12-03-noise-curve-magi.md for the download command).
#
#   bash experiments/noise_curve_gpu.sh OUT           # on the GPU machine
#   bash experiments/noise_curve_gpu.sh OUT --tiny    # anywhere: toy sizes on the CPU (CI)
#
# Environment: DRAWS (data draws, default 0-2, the search; 10-14 confirms), SEEDS (0-4),
# JOBS (runs at once, default 14), DEADLINE (default 480), PREVIOUS (archives an earlier
# call returned, both of them, unpacked with the published runs: a second call goes on
# from them and resumes the runs the first stopped).
# The device check's runs are published as noise_curve_gpu_check_{search,confirm}.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash experiments/noise_curve_gpu.sh OUT [--tiny]}
tiny=${2:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# The CPU rows of the curve compute in fp32: so do these (no bf16 autocast, which the
# recipes' precision "auto" would choose on a GPU, and no TF32 in cuBLAS and cuDNN).
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 NVIDIA_TF32_OVERRIDE=0
start=$(date +%s)
stamp() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$out/timeline.txt"; }

# Asked from / with esx's installed metadata: from the repository's root the source folder
# alone would import, without the plugins' entry points or the packages that machine lacks.
if ! (cd / && python3 -c "import esx, importlib.metadata as m; m.version('esx')") 2>/dev/null; then
  stamp "installing esx and the wheels in .whl/ without an index"
  # Into a folder of its own (the machine's environment may be read-only): the wheels,
  # then esx itself (its plugins' entry points with it), built with the machine's setuptools.
  wheels=()
  if compgen -G ".whl/*.whl" >/dev/null; then wheels=(.whl/*.whl); fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --no-build-isolation --upgrade --target /tmp/site "${wheels[@]}" .
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

draws=${DRAWS:-0-2}
seeds=${SEEDS:-0-4}
jobs=${JOBS:-14}
deadline=${DEADLINE:-480}
sets=(--set train.precision=fp32)
if [ "$tiny" = "--tiny" ]; then
  draws=0; seeds=0; jobs=2; deadline=${DEADLINE:-300}
  sets+=(--set data.params.of.params.n_train=60 --set data.params.of.params.n_val=30
        --set data.params.of.params.n_test=30 --set train.epochs=1 --set train.batch_size=32)
fi
stamp "$(python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())")"
runs="$out/runs"
mkdir -p "$runs"
# The runs under runs/ that have finished (a metrics.json), one folder a line, sorted.
finished_runs() { (cd "$runs" && find . -name metrics.json | sed 's|/metrics.json$||' | sort); }

# The published runs of each sweep folder (not at toy sizes, whose runs differ), renamed
# to the folder the sweeps below write into.
if [ "$tiny" != "--tiny" ]; then
  kind=search
  case "$draws" in 10*) kind=confirm ;; esac
  for folder in noise_curve one_marker noise_curve_energy noise_curve_gpu_check; do
    archive=docs/run_metrics/${folder}_$kind.tar.gz
    [ -f "$archive" ] || continue
    tar xzf "$archive" -C "$runs" --transform "s|^[^/]*/|$folder/|"
  done
fi
# An earlier call's archive (PREVIOUS, paths relative to the repository: carry them), so
# a second call in one session goes on where the first stopped instead of redoing it.
for previous in ${PREVIOUS:-}; do
  tar xzf "$previous" -C "$runs"
done
finished_runs >"$out/published.txt"
stamp "published runs unpacked (the sweeps skip them): $(wc -l <"$out/published.txt")"

# One sweep: its folder under runs/, then esx sweep's arguments; skipped past the deadline.
sweep() {
  local folder=$1
  shift
  local left=$((deadline - ($(date +%s) - start)))
  if [ "$left" -lt 30 ]; then
    stamp "skipped (deadline): $folder $*"
    return 0
  fi
  stamp "sweep into $folder: $*"
  timeout -s INT "$left" python3 -m esx sweep "$@" --seeds "$seeds" --jobs "$jobs" \
    --out "$runs/$folder" "${sets[@]}" >>"$out/sweeps.log" 2>&1 \
    || stamp "sweep ended early (exit $?): $folder"
}

curve=(recipes/noise_curve/magi.yaml recipes/noise_curve/magi_weighted.yaml)
draw=(--vary "data.params.of.params.seed=$draws")
sweep noise_curve_gpu_check recipes/noise_curve/consensus.yaml \
  --vary data.params.level=0.25 "${draw[@]}"
sweep noise_curve "${curve[@]}" --vary data.params.level=0.25,0.5,0 "${draw[@]}"
sweep one_marker recipes/one_marker/magi.yaml recipes/one_marker/magi_weighted.yaml "${draw[@]}"
sweep noise_curve "${curve[@]}" --vary data.params.level=0.75,1 "${draw[@]}"
energy=(recipes/noise_curve_energy/magi.yaml recipes/noise_curve_energy/magi_weighted.yaml)
sweep noise_curve_energy "${energy[@]}" --vary data.params.level=0.25,0.5,0,0.75,1 "${draw[@]}"

# The runs finished here (not the unpacked ones): their small files, and a count per row.
finished_runs | comm -23 - "$out/published.txt" >"$out/finished.txt"
stamp "finished runs: $(wc -l <"$out/finished.txt")"
(cd "$runs" && awk -F/ '{print $2 "/" $3}' "$out/finished.txt" | sort | uniq -c) \
  | tee -a "$out/timeline.txt"
(cd "$runs" && while read -r run; do
  for f in metrics.json history.csv predictions.csv recipe.yaml run.log status.json; do
    [ -f "$run/$f" ] && echo "$run/$f"
  done
done <"$out/finished.txt") >"$out/files.txt"
tar czf "$out/noise_curve_gpu.tar.gz" -C "$runs" -T "$out/files.txt"
# The runs stopped with a checkpoint (an epoch finished), whole but for their claims, for
# the next call; about 1.1 MB a MAGI run, so in parts of at most 15 MB (the device tool
# returns files of up to 16 MiB): cat noise_curve_gpu_stopped.tar.gz.* > one archive.
(cd "$runs" && find . -name last.safetensors | sed 's|/last.safetensors$||' | sort) \
  | comm -23 - <(finished_runs) >"$out/stopped.txt"
tar czf - --exclude=".esx-claim.json*" -C "$runs" -T "$out/stopped.txt" \
  | split -b 15m -d -a 1 - "$out/noise_curve_gpu_stopped.tar.gz."
stamp "stopped runs with a checkpoint (the next call's PREVIOUS resumes them): $(wc -l <"$out/stopped.txt")"
rm -rf "$runs" "$out/files.txt"
stamp "done: $out/noise_curve_gpu.tar.gz"
# At toy sizes every run must finish (1 device check + 2 rows x 5 levels + 2 of question 2
# + 2 rows x 5 levels of the energy curve).
if [ "$tiny" = "--tiny" ] && [ "$(wc -l <"$out/finished.txt")" -ne 23 ]; then
  echo "error: $(wc -l <"$out/finished.txt") of 23 toy runs finished; see $out/sweeps.log" >&2
  exit 1
fi
