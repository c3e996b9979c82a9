"""``depth-ablate``: run the study's experiment configs on the same data, seed and budget.

Each config trains into ``OUT/<name>/``, is evaluated on the same held-out split, and one table
(Markdown + JSON) compares the loss weights, every metric, the edge-region metrics and the
training time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from edgedepth.cli import configure_logging, run_command
from edgedepth.io import check_writable_folder, write_json_atomic, write_text_atomic

#: The study's weight experiments followed by the four-way loss ablation.
STUDY_CONFIGS = ("baseline", "grad_a", "grad_b", "grad_c", "ssi_only", "silog_only", "ssi_silog", "ssi_silog_grad")
#: Columns of the Markdown table, in order (all metrics stay in the JSON).
TABLE_METRICS = ("abs_rel", "rmse", "mae", "d1", "d2", "d3", "edge_abs_rel", "edge_rmse", "edge_d1", "boundary_f1")


def run_experiment(name: str, out_dir: Path, overrides: Sequence[str]) -> Dict[str, Any]:
    """Train and evaluate one config; returns its row of the table."""
    from edgedepth.training.config import load_config
    from edgedepth.training.evaluate import evaluate_checkpoint
    from edgedepth.training.trainer import Trainer

    run_dir = out_dir / name
    cfg = load_config(name, list(overrides) + [f"train.output_dir={run_dir}"])
    started = time.perf_counter()
    trainer = Trainer(cfg, run_dir)
    try:
        trainer.train()
    finally:
        trainer.close()
    seconds = time.perf_counter() - started
    result = evaluate_checkpoint(run_dir / "checkpoints" / "last.pt", overrides=list(overrides))
    weights = {k: cfg.loss[k] for k in ("ssi_weight", "silog_weight", "gradient_weight")}
    return {"config": name, "weights": weights, "train_seconds": round(seconds, 1), "metrics": result["metrics"]}


def markdown_table(rows: List[Dict[str, Any]], command: str) -> str:
    """The comparison table (weights, metrics, edge metrics, train time)."""
    head = ["config", "ssi", "silog", "grad"] + list(TABLE_METRICS) + ["train s"]
    lines = [f"Command: `{command}`", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        w, m = row["weights"], row["metrics"]
        cells = [row["config"], f"{w['ssi_weight']:g}", f"{w['silog_weight']:g}", f"{w['gradient_weight']:g}"]
        cells += [_fmt(m.get(key)) for key in TABLE_METRICS] + [f"{row['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Lower is better for abs_rel, rmse, mae and the edge_ errors; "
              "higher for d1-d3, edge_d1, boundary_f1."]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depth-ablate", description=__doc__)
    parser.add_argument("--configs", nargs="+", default=list(STUDY_CONFIGS),
                        help="configs to compare (names or YAML paths)")
    parser.add_argument("--output-dir", required=True, help="run folders and results.{md,json} go here")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every config (same data, seed, budget)")
    return parser


def ablate_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-ablate``."""
    return run_command("depth-ablate", _parser(), lambda args: _ablate(args, argv), argv)


def _ablate(args: argparse.Namespace, argv: Optional[List[str]]) -> int:
    configure_logging()
    out_dir = Path(args.output_dir)
    check_writable_folder(out_dir, "--output-dir")  # before the first of several trainings
    command = "depth-ablate " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = []
    for name in args.configs:
        rows.append(run_experiment(name, out_dir, args.overrides))
        # Rewritten after each config so a long sweep that is stopped keeps what it finished.
        write_json_atomic(out_dir / "results.json", {"command": command, "rows": rows})
        write_text_atomic(out_dir / "results.md", markdown_table(rows, command))
    print(markdown_table(rows, command))
    print(json.dumps({"results": str(out_dir / "results.md")}))
    return 0
