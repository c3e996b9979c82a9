#!/usr/bin/env bash
# The README's main job on an embedded default: train on synthetic rooms (CPU, a few minutes),
# evaluate on held-out scenes, print the metrics. Run through `make demo` (which sets up .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/demo}

echo "== 1/2 train (configs/demo.yaml -> $RUN)"
depth-train --config configs/demo.yaml "train.output_dir=$RUN" "$@"

echo "== 2/2 evaluate the best checkpoint on held-out synthetic scenes"
depth-eval --checkpoint "$RUN/checkpoints/best.pt" --output "$RUN/metrics.json"
echo "metrics: $RUN/metrics.json   TensorBoard: tensorboard --logdir $RUN/tb"
