#!/usr/bin/env bash
# The README's main job on an embedded default: train on synthetic rooms (CPU, a few minutes),
# evaluate on held-out scenes, export a self-describing ONNX (FP32 + FP16), calibrate INT8,
# check every artifact against the checkpoint, and stream depth headless over a short clip.
# Run through `make demo` (which sets up .venv). Extra arguments go to depth-train as overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/demo}
mkdir -p "$RUN"

echo "== 1. train (configs/demo.yaml -> $RUN)"
depth-train --config configs/demo.yaml "train.output_dir=$RUN" "$@"

echo "== 2. evaluate the best checkpoint on held-out synthetic scenes"
depth-eval --checkpoint "$RUN/checkpoints/best.pt" --output "$RUN/metrics.json"

echo "== 3. export ONNX (FP32, verified against PyTorch) and its FP16 twin"
depth-export onnx --checkpoint "$RUN/checkpoints/best.pt" --output "$RUN/model.fp16.onnx" --fp16

if command -v depth-calib >/dev/null; then
  echo "== 4. INT8 (Q/DQ) from real calibration images, kept only within the depth-metric budget"
  depth-calib --onnx "$RUN/model.onnx" --data configs/demo.yaml --num-images 64 --output "$RUN/model.int8.onnx"
fi

echo "== 4b. will TensorRT parse them? JetPack 5 (8.5), 6.0 (8.6), 6.1+ (10.3), 7 (10.16), 11 -- no TensorRT needed"
depth-export check "$RUN/model.onnx" --trt-version 8.5 8.6 10.3 10.16 11
[ -f "$RUN/model.int8.onnx" ] && depth-export check "$RUN/model.int8.onnx"   # its target: this TensorRT, else 10

if command -v depth-parity >/dev/null; then
  echo "== 5. parity: every artifact against the PyTorch checkpoint"
  candidates=("$RUN/model.onnx" "$RUN/model.fp16.onnx")
  [ -f "$RUN/model.int8.onnx" ] && candidates+=("$RUN/model.int8.onnx")
  depth-parity --checkpoint "$RUN/checkpoints/best.pt" --candidates "${candidates[@]}" --report-dir "$RUN/parity"
fi

echo "== 6. depth-run headless over a synthetic clip (video + 16-bit depth PNGs + stats)"
python -m edgedepth.training.data.clip --clip "$RUN/clip.mp4" --frames 48 --size 240x320
depth-run --model "$RUN/model.onnx" --input "$RUN/clip.mp4" --no-display --output "$RUN/depth_view.mp4" \
  --save-depth "$RUN/depth" --stats-json "$RUN/run_stats.json"

echo "done: $RUN (metrics.json, model*.onnx, depth_view.mp4, run_stats.json; tensorboard --logdir $RUN/tb)"
