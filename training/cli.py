"""``depth-train`` and ``depth-eval``: the training stage's commands.

Library code raises; :func:`edgedepth.cli.run_command` turns errors into a one-line message and
an exit code (1 = failed, 2 = bad usage, 130 = interrupted).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from edgedepth.cli import configure_logging, run_command
from edgedepth.errors import UsageError


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-train",
        description="Train a depth network. Writes config.yaml, checkpoints/{last,best}.pt and TensorBoard "
        "events (tb/) into train.output_dir. Under torchrun it trains with DistributedDataParallel.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="YAML file or shipped config name (e.g. grad_a); default: built-in defaults")
    source.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from checkpoints/last.pt")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.steps=500")
    return parser


def train_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-train``."""
    return run_command("depth-train", _train_parser(), _train, argv)


def _train(args: argparse.Namespace) -> int:
    from edgedepth.training.config import load_config
    from edgedepth.training.trainer import Trainer

    configure_logging()
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise UsageError(f"--resume {run_dir}: no config.yaml there; pass the run folder depth-train wrote")
        cfg = load_config(run_dir / "config.yaml", list(args.overrides) + [f"train.output_dir={run_dir}"])
    else:
        cfg = load_config(args.config, args.overrides)
        run_dir = Path(cfg.train.output_dir)
    trainer = Trainer(cfg, run_dir, resume=bool(args.resume))
    try:
        metrics = trainer.train()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        _print_summary(run_dir, metrics)
    return 0


def _print_summary(run_dir: Path, metrics: dict) -> None:
    from edgedepth.metrics import format_metrics_table
    from edgedepth.training.trainer import SHARE_WINDOW, SUMMARY_FILE

    shares = metrics.get("loss_shares") or {}
    print(format_metrics_table({"val": {k: v for k, v in metrics.items() if k != "loss_shares"}}))
    if shares:
        listed = ", ".join(f"{term} {share:.3f}" for term, share in shares.items())
        print(f"loss shares (mean over the last {SHARE_WINDOW} logged steps): {listed}")
    print(f"run folder: {run_dir}  ({SUMMARY_FILE}; tensorboard --logdir {run_dir / 'tb'})")


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-eval",
        description="Evaluate a checkpoint on a dataset split: prints a metrics table and writes JSON with every "
        "metric of compute_depth_metrics plus the edge-region metrics.",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by depth-train (last.pt / best.pt)")
    parser.add_argument("--config", help="YAML/shipped config for the data (default: the config in the checkpoint)")
    parser.add_argument("--split", default=None, help="dataset split to evaluate (default: eval.split, i.e. val)")
    parser.add_argument("--output", help="write the metrics JSON here")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.root=/data/nyu")
    return parser


def eval_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-eval``."""
    return run_command("depth-eval", _eval_parser(), _eval, argv)


def _eval(args: argparse.Namespace) -> int:
    from edgedepth.io import check_outputs, write_json_atomic
    from edgedepth.metrics import format_metrics_table
    from edgedepth.training.evaluate import evaluate_checkpoint

    configure_logging()
    check_outputs({"--output": args.output}, {"--checkpoint": args.checkpoint, "--config": args.config})
    result = evaluate_checkpoint(args.checkpoint, config=args.config, overrides=args.overrides, split=args.split)
    print(format_metrics_table({Path(args.checkpoint).name: result["metrics"]}))
    if args.output:
        write_json_atomic(args.output, result)
        print(f"wrote {args.output}")
    else:
        print(json.dumps(result["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
