"""What each of the study's configs costs per training step, on this machine.

Builds one ``Trainer`` per config (shipped names or YAML paths, with the same ``key=value``
overrides) and times its own ``train_step`` (autocast, channels_last, loss, backward, clipping,
AdamW, schedule) on one fixed batch of synthetic rooms, the configs in rotating order after a
warm-up so a neighbour's load hits all of them alike; each figure is a median. Also times the loss
alone (forward + backward on a fixed prediction). Ratios are against the first config.

    python benchmarks/bench_train_step.py --configs baseline grad_a --json step.json
    python benchmarks/bench_train_step.py --configs baseline grad_a_norm rezero gelu --height 96 --width 128

``within_budget``: the config's step is at most 10 % slower than the first one's (the budget the
gradient loss was given).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Callable, Dict, List

import torch

from edgedepth.io import write_json_atomic
from edgedepth.training.config import load_config
from edgedepth.training.trainer import Trainer

from common import interleaved_times  # benchmarks/common.py (run as a script)

OVERHEAD_BUDGET = 0.10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["baseline", "grad_a"],
                        help="configs to time; the first is the reference of the ratios")
    parser.add_argument("--iterations", type=int, default=10, help="timed steps per config")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per config")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every config")
    return parser.parse_args()


def build_trainer(name: str, args: argparse.Namespace, work: Path) -> Trainer:
    """The config's trainer on a few synthetic rooms (cached in ``work``), writing into ``work``."""
    overrides = [
        f"data.height={args.height}", f"data.width={args.width}", f"train.batch_size={args.batch}",
        "data.dataset=synthetic", f"data.synthetic.num_train={2 * args.batch}", "data.synthetic.num_val=2",
        f"data.synthetic.cache_dir={work / 'cache'}", "data.num_workers=0", *args.overrides,
    ]
    cfg = load_config(name, overrides)
    return Trainer(cfg, work / Path(name).stem)


def step_runner(trainer: Trainer, batch: Dict[str, torch.Tensor]) -> Callable[[], object]:
    return lambda: trainer.train_step(batch)


def loss_runner(trainer: Trainer, batch: Dict[str, torch.Tensor]) -> Callable[[], object]:
    """Forward + backward of the config's loss alone, on a fixed prediction."""
    depth, mask = batch["depth"].to(trainer.device), batch["mask"].to(trainer.device)
    pred = (torch.rand_like(depth) * trainer.spec.max_depth).clamp_min(trainer.spec.min_depth)

    def run() -> None:
        leaf = pred.detach().requires_grad_(True)
        total, _ = trainer.loss_fn(leaf, depth, mask)
        total.backward()

    return run


def medians(times: Dict[str, List[float]]) -> Dict[str, float]:
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def report(step_ms: Dict[str, float], loss_ms: Dict[str, float], args: argparse.Namespace) -> dict:
    reference = args.configs[0]
    ratios = {name: round(ms / step_ms[reference], 4) for name, ms in step_ms.items()}
    return {
        "device": "cpu",
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "batch": args.batch,
        "height": args.height,
        "width": args.width,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "overrides": args.overrides,
        "reference": reference,
        "step_ms": step_ms,
        "step_ratio": ratios,
        "loss_only_ms": loss_ms,
        "budget": OVERHEAD_BUDGET,
        "within_budget": {name: ratio <= 1.0 + OVERHEAD_BUDGET for name, ratio in ratios.items()},
    }


def main() -> None:
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as tmp:
        trainers = {name: build_trainer(name, args, Path(tmp)) for name in args.configs}
        # One batch for every config: the same images, depths and masks (the first config's loader).
        batch = next(iter(trainers[args.configs[0]].train_loader))
        try:
            step_ms = medians(interleaved_times(
                {name: step_runner(t, batch) for name, t in trainers.items()}, args.iterations, args.warmup))
            loss_ms = medians(interleaved_times(
                {name: loss_runner(t, batch) for name, t in trainers.items()}, args.iterations, args.warmup))
        finally:
            for trainer in trainers.values():
                trainer.close()
    result = report(step_ms, loss_ms, args)
    if args.json:
        write_json_atomic(args.json, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
