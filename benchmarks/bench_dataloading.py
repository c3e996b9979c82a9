"""Data-loading stall: how long a training step waits for its batch, relative to the step.

Runs real training steps (batch 8, 256x320 by default, the config's default data workers) and
prints JSON: median step time, mean/p90 data wait, and stall_ratio = total wait / total time.
The issue's target: stall_ratio <= 0.05. The first batches (worker start-up) are excluded.

    python benchmarks/bench_dataloading.py [--config demo] [--steps 30] [key=value ...]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch


def measure(config: str, steps: int, warmup: int, overrides: list) -> dict:
    from edgedepth.training.config import load_config
    from edgedepth.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, [f"train.output_dir={tmp}/run", *overrides])
        trainer = Trainer(cfg)
        waits, totals = [], []
        batches = trainer.batches()
        for index in range(warmup + steps):
            started = time.perf_counter()
            batch, _ = next(batches)
            fetched = time.perf_counter()
            trainer.train_step(batch)
            if index >= warmup:
                waits.append(fetched - started)
                totals.append(time.perf_counter() - started)
    return {
        "config": config,
        "batch_size": cfg.train.batch_size,
        "size": [cfg.data.height, cfg.data.width],
        "dataset": cfg.data.dataset,
        "num_workers": cfg.data.num_workers,
        "torch_threads": torch.get_num_threads(),
        "steps_measured": steps,
        "step_ms_median": 1000 * float(np.median(totals)),
        "data_wait_ms_mean": 1000 * float(np.mean(waits)),
        "data_wait_ms_p90": 1000 * float(np.percentile(waits, 90)),
        "stall_ratio": float(np.sum(waits) / np.sum(totals)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    defaults = ["train.batch_size=8", "data.height=256", "data.width=320", "data.synthetic.num_train=240",
                "data.synthetic.num_val=8", "train.image_every=100000", "train.eval_every=100000"]
    result = measure(args.config, args.steps, args.warmup, defaults + args.overrides)
    result["passes"] = result["stall_ratio"] <= 0.05
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
