#!/usr/bin/env bash
# The loss study of issue 13 on synthetic rooms, 96x128, on this project's 2-core CPU: three
# depth-ablate sweeps, each resumable (rerun this script after a stop: finished runs are skipped).
#
#   1. the gradient term as the seed wrote it: baseline vs grad_a/b/c (weights 0.4/0.4/0.2,
#      0.35/0.35/0.3, 0.5/0.5/0.1, gradient of metric depth) and the single-term ablation
#      ssi_only / silog_only (ssi_silog and ssi_silog_grad are baseline and grad_a under other
#      names: the same seed trains the same model, so they are not run twice);
#   2. the gradient term carrying its configured share: baseline_norm vs grad_a/b/c_norm
#      (gradient of the SSI-aligned prediction, every term normalised by its running mean);
#   3. the architecture: baseline vs rezero (ReZero on/off) and gelu (ELU/GELU).
#
# Usage: PATH=.venv/bin:$PATH bash scripts/loss_study.sh OUT [key=value...]  (overrides go to every run)
# Budget: STEPS (default 1500) and SEEDS (default "0 1 2"): 36 runs. The sweeps' configs are
# WEIGHTS, NORMALISED (its first is its baseline) and ARCHITECTURE (first: baseline, reused from
# sweep 1), e.g. ARCHITECTURE="baseline rezero gelu rezero_gelu" for the 2x2.
# JOBS=2 trains two runs at a time, each on one thread (OMP_NUM_THREADS=1): on a 2-core CPU that is
# about 1.3x the throughput of one run on two threads (a 96x128 step does not keep two threads busy).
# Lane 1 runs sweep 1 and then every other architecture config, lane 2 sweep 2 and then the rest, so
# no run folder is ever trained by both; the summaries and figures are written once both are done.
#
# Pilot behind the default (2026-12-06, this 2-core AMD EPYC, bf16 autocast, nice 10; the same
# settings with eval.max_samples=100): about 0.21-0.25 s per step when the machine is otherwise
# idle (evaluations included), 2-8x that while other jobs run tests. Baseline, seed 0, held-out
# abs_rel / d1 / boundary F1 after 300 steps 0.250 / 0.632 / 0.100, 750 steps 0.203 / 0.682 / 0.087
# (179 s wall), 1500 steps 0.191 / 0.706 / 0.144 (322 s wall): 750 -> 1500 still buys 0.011
# abs_rel and lifts boundary F1 by 0.06 (3 sd), so edges are learned late and 750 steps is too short to
# judge an edge loss. In the study the validation abs_rel still fell 2-4% over the last fifth of every
# run, as the cosine schedule anneals (the convergence table of each ablation.md). 36 runs x ~330 s = about 3.3 h on an idle machine, about 2.9 h with JOBS=2
# (measured: results/loss_study_96x128/README.md). Seed spread at 300 steps (3 seeds,
# baseline): d1 sd 0.014, abs_rel sd 0.003, boundary F1 sd 0.018; the paired d1 difference had sd
# ~0.01, so 3 seeds resolve d1 differences above ~0.025 and 10 seeds above ~0.007: a 1% effect
# needs ~10 seeds (SEEDS="0 1 2 3 4 5 6 7 8 9" for the configs that matter).
set -euo pipefail
OUT=${1:?usage: bash scripts/loss_study.sh OUT [key=value...]}
shift
STEPS=${STEPS:-1500}
SEEDS=${SEEDS:-0 1 2}
# shellcheck disable=SC2206
SEED_ARGS=($SEEDS)
COMMON=(
  "data.synthetic.cache_dir=$OUT/cache" data.height=96 data.width=128 data.synthetic.num_train=2000
  data.synthetic.num_val=200 "train.steps=$STEPS" train.batch_size=8 train.lr=0.001 train.warmup_steps=50
  "train.eval_every=$((STEPS / 10))" "train.image_every=$STEPS" "train.checkpoint_every=$((STEPS / 5))"
  eval.max_samples=200 "$@"
)

# shellcheck disable=SC2206
WEIGHTS=(${WEIGHTS:-baseline grad_a grad_b grad_c ssi_only silog_only})
# shellcheck disable=SC2206
NORMALISED=(${NORMALISED:-baseline_norm grad_a_norm grad_b_norm grad_c_norm})
# shellcheck disable=SC2206
ARCHITECTURE=(${ARCHITECTURE:-baseline rezero gelu})

sweep() {  # sweep DIR [--baseline NAME] CONFIG...: one depth-ablate over every seed
  local dir=$1; shift
  local baseline=()
  if [ "$1" = --baseline ]; then baseline=(--baseline "$2"); shift 2; fi
  depth-ablate --configs "$@" "${baseline[@]}" --seeds "${SEED_ARGS[@]}" --output-dir "$OUT/$dir" "${COMMON[@]}"
}

# The baseline runs of sweep 1 are reused by the architecture sweep (same config, same seeds):
# linked, not trained again.
mkdir -p "$OUT/architecture"
[ -e "$OUT/architecture/baseline" ] || ln -s ../weights/baseline "$OUT/architecture/baseline"

if [ "${JOBS:-1}" = 2 ]; then
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  # Each lane's summaries are written again below with every run present; --no-plots until then.
  # The architecture configs but the baseline (trained in sweep 1), dealt out to the two lanes.
  lane1_arch=() lane2_arch=()
  for i in "${!ARCHITECTURE[@]}"; do
    if [ "$i" -eq 0 ]; then continue; fi
    if [ $((i % 2)) -eq 1 ]; then lane1_arch+=("${ARCHITECTURE[$i]}"); else lane2_arch+=("${ARCHITECTURE[$i]}"); fi
  done
  (sweep weights "${WEIGHTS[@]}" --no-plots \
    && { [ ${#lane1_arch[@]} -eq 0 ] || sweep architecture "${lane1_arch[@]}" --no-plots; }) &
  lane1=$!
  (sweep normalised --baseline "${NORMALISED[0]}" "${NORMALISED[@]}" --no-plots \
    && { [ ${#lane2_arch[@]} -eq 0 ] || sweep architecture "${lane2_arch[@]}" --no-plots; }) &
  lane2=$!
  wait "$lane1"
  wait "$lane2"
fi
# Serial, or after the lanes: every finished run is skipped, so this writes the reports and figures.
sweep weights "${WEIGHTS[@]}"
sweep normalised --baseline "${NORMALISED[0]}" "${NORMALISED[@]}"
sweep architecture "${ARCHITECTURE[@]}"
