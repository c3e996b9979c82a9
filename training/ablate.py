"""``depth-ablate``: run the study's configs over several seeds and say which differences are real.

``depth-ablate --configs NAME... --seeds 0 1 2 --output-dir DIR [key=value...]`` trains every
config with every seed (``train.seed``) on the same data and budget, evaluates each final model
(``last.pt``; ``best.pt`` is chosen on the validation split, so it is not reported) and writes:

* ``DIR/<config>/seed<k>/``: the run folder (config, checkpoints, TensorBoard) and its
  ``result.json``, written atomically when the run is finished and evaluated. A rerun of the
  same command skips the runs that have one, resumes a run that has a checkpoint, and refuses
  a run folder trained with another config.
* ``DIR/ablation.json``: ``runs`` (one per config and seed), ``summary`` (per config: mean,
  sample standard deviation and 95% t-interval of the mean of every metric, mean loss shares)
  and ``comparisons`` (each config against the baseline, paired by seed: mean difference,
  95% t-interval and paired t-test p value of the headline and edge metrics).
* ``DIR/ablation.md``: those tables and a generated reading; ``DIR/*.png``: loss and validation
  curves, a metric chart with error bars, and one validation scene per config
  (:mod:`edgedepth.training.ablate_plots`).
* ``DIR/results.{json,md}``: one row per run, as before ``--seeds`` existed.

Without ``--seeds`` each config trains once with its own ``train.seed`` into ``DIR/<config>/``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from edgedepth.cli import configure_logging, run_command
from edgedepth.errors import UsageError
from edgedepth.io import check_writable_folder, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

#: The study's weight experiments followed by the four-way loss ablation.
STUDY_CONFIGS = ("baseline", "grad_a", "grad_b", "grad_c", "ssi_only", "silog_only", "ssi_silog", "ssi_silog_grad")
#: Columns of the per-run Markdown table, in order (all metrics stay in the JSON).
TABLE_METRICS = ("abs_rel", "rmse", "mae", "d1", "d2", "d3", "edge_abs_rel", "edge_rmse", "edge_d1", "boundary_f1")
#: Compared against the baseline: the headline metrics, then the edge-region and boundary ones.
HEADLINE_METRICS = ("abs_rel", "rmse", "d1")
EDGE_METRICS = ("edge_abs_rel", "edge_rmse", "edge_d1", "boundary_f1")
COMPARED_METRICS = HEADLINE_METRICS + EDGE_METRICS
#: Metrics where higher is better (every other one: lower is better).
HIGHER_IS_BETTER = frozenset({"d1", "d2", "d3", "edge_d1", "boundary_precision", "boundary_recall", "boundary_f1"})
#: The weighted loss terms whose shares are reported.
LOSS_TERMS = ("ssi", "silog", "grad")
RESULT_FILE = "result.json"
CONFIDENCE = 0.95
#: The validation curve that tells whether the budget was long enough, and where it is read
#: (fractions of the run): a curve still falling over the last fifth says train longer.
CONVERGENCE_TAG = "val/abs_rel"
CONVERGENCE_AT = (0.6, 0.8, 1.0)


@dataclass(frozen=True)
class Run:
    """One training of the study: a config, a seed (None = the config's own) and its folder."""

    config: str
    seed: Optional[int]
    run_dir: Path


# ----------------------------------------------------------------------------- runs


def config_label(name: str) -> str:
    """A config's name in tables and folders: the file stem for a YAML path."""
    return Path(name).stem if name.endswith((".yaml", ".yml")) else name


def plan_runs(configs: Sequence[str], seeds: Optional[Sequence[int]], out_dir: Path) -> List[Run]:
    """Every config x seed, seed-major: a sweep stopped early has every config at the same number
    of seeds, so its partial ``ablation.md`` still compares like with like."""
    labels = [config_label(name) for name in configs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UsageError(f"--configs names {repeated} more than once; list each config once")
    if seeds is None:
        return [Run(name, None, out_dir / config_label(name)) for name in configs]
    if len(set(seeds)) != len(seeds) or any(seed < 0 for seed in seeds):
        raise UsageError(f"--seeds {list(seeds)}: expected distinct whole numbers >= 0, e.g. --seeds 0 1 2")
    return [Run(name, seed, out_dir / config_label(name) / f"seed{seed}") for seed in seeds for name in configs]


def run_overrides(run: Run, overrides: Sequence[str]) -> List[str]:
    """The overrides of one run: the shared ones, its seed, its folder."""
    extra = [] if run.seed is None else [f"train.seed={run.seed}"]
    return list(overrides) + extra + [f"train.output_dir={run.run_dir}"]


def run_config(run: Run, overrides: Sequence[str]) -> Any:
    from edgedepth.training.config import load_config

    return load_config(run.config, run_overrides(run, overrides))


def finished_result(run: Run, cfg: Any) -> Optional[Dict[str, Any]]:
    """The run's ``result.json`` when it finished with this config; None when it has not finished.

    Refuses a run folder whose saved config is another one (changed overrides): its result or
    checkpoint would silently stand in for a different experiment.
    """
    from edgedepth.training.config import config_hash, load_config

    saved = run.run_dir / "config.yaml"
    if saved.is_file() and config_hash(load_config(saved)) != config_hash(cfg):
        raise UsageError(
            f"{run.run_dir} was trained with another config than {run.config} with these overrides now gives "
            f"(compare {saved}); give another --output-dir, or remove that folder to train it again"
        )
    path = run.run_dir / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if isinstance(result, dict) and "metrics" in result else None


def run_experiment(run: Run, overrides: Sequence[str]) -> Dict[str, Any]:
    """Train (or resume, or skip when finished) and evaluate one run; returns its result.

    The result (``config, seed, metrics, loss_shares, train_seconds`` and the loss options) is
    written to ``run_dir/result.json`` last and atomically: its presence means the run is done.
    """
    from edgedepth.training.config import config_hash
    from edgedepth.training.evaluate import evaluate_checkpoint
    from edgedepth.training.trainer import CHECKPOINT_DIR, LAST_CHECKPOINT, Trainer

    cfg = run_config(run, overrides)
    done = finished_result(run, cfg)
    if done is not None:
        log.info("%s: finished before, skipped (%s)", run.run_dir, RESULT_FILE)
        return dict(done, run_dir=str(run.run_dir))
    checkpoint = run.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    resume = checkpoint.is_file()
    if resume:
        log.info("%s: resuming from %s", run.run_dir, checkpoint)
    trainer = Trainer(cfg, run.run_dir, resume=resume)
    try:
        trained = trainer.train()
    finally:
        trainer.close()
    evaluated = evaluate_checkpoint(checkpoint, overrides=run_overrides(run, overrides))
    result = {
        "config": config_label(run.config),
        "seed": int(cfg.train.seed),
        "metrics": _numbers(evaluated["metrics"]),
        # A resumed trainer only saw the steps after the resume; the events hold them all.
        "loss_shares": (None if resume else _trainer_shares(trained)) or shares_from_events(run.run_dir),
        # The training loop's own clock (data set-up and the final evaluation left out); after a
        # resume only the resumed part.
        "train_seconds": round(float(trained.get("train_seconds", math.nan)), 1),
        "resumed": resume,
        "loss": {key: _plain(cfg.loss[key]) for key in cfg.loss},
        "config_hash": config_hash(cfg),
    }
    write_json_atomic(run.run_dir / RESULT_FILE, result)
    return dict(result, run_dir=str(run.run_dir))


def _plain(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _numbers(metrics: Mapping[str, Any]) -> Dict[str, Optional[float]]:
    """Numeric metrics as JSON-safe floats (NaN, e.g. an undefined boundary precision, as null)."""
    out: Dict[str, Optional[float]] = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value) if math.isfinite(value) else None
    return out


def _trainer_shares(trained: Mapping[str, Any]) -> Optional[Dict[str, float]]:
    """The trainer's ``loss_shares`` (mean of the last steps) as ``{ssi, silog, grad}``, if it has them."""
    shares = trained.get("loss_shares")
    if not isinstance(shares, Mapping) or not shares:
        return None
    plain = {str(key).rsplit("/", 1)[-1]: float(value) for key, value in shares.items()}
    return {term: round(plain.get(term, 0.0), 6) for term in LOSS_TERMS}


#: A run's TensorBoard scalars: tag -> (steps, values).
RunScalars = Dict[str, Tuple[List[int], List[float]]]


def read_scalars(run_dir: Path) -> RunScalars:
    """Every scalar of a run's TensorBoard events: tag -> (steps, values), by step.

    TensorBoard's own reader; it drops the events a resumed run superseded (purge)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = run_dir / "tb"
    if not folder.is_dir():
        return {}
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags().get("scalars", []):
        by_step = {event.step: event.value for event in events.Scalars(tag)}
        steps = sorted(by_step)
        out[tag] = (steps, [float(by_step[step]) for step in steps])
    return out


def share_tag(scalars: Mapping[str, Any], term: str) -> Optional[str]:
    """The TensorBoard tag of a term's share (the trainer logs ``loss_share/<term>``), None when absent."""
    tag = f"loss_share/{term}"
    return tag if tag in scalars else None


def shares_from_events(run_dir: Path) -> Dict[str, float]:
    """Each term's mean share over the last logged steps (the trainer's ``SHARE_WINDOW``), from the
    TensorBoard events: the trainer's own average, for a run it did not train from the start."""
    from edgedepth.training.trainer import SHARE_WINDOW

    scalars = read_scalars(run_dir)
    shares = {}
    for term in LOSS_TERMS:
        tag = share_tag(scalars, term)
        if tag is None:
            shares[term] = 0.0  # the term had weight 0: no share
            continue
        recent = scalars[tag][1][-SHARE_WINDOW:]
        shares[term] = round(sum(recent) / len(recent), 6)
    return shares


def convergence(rows: Sequence[Mapping[str, Any]], scalars: Mapping[str, RunScalars]) -> List[Dict[str, Any]]:
    """Per config, :data:`CONVERGENCE_TAG` (mean over seeds) at the logged steps nearest
    :data:`CONVERGENCE_AT` of the last step every seed logged, and its relative change over the
    last of those intervals; configs without the curve are left out. ``scalars``: each row's
    run_dir -> :func:`read_scalars`."""
    curves: Dict[str, List[Dict[int, float]]] = {}
    for row in rows:
        steps_values = scalars[row["run_dir"]].get(CONVERGENCE_TAG)
        if steps_values:
            curves.setdefault(row["config"], []).append(dict(zip(*steps_values)))
    out = []
    for config, seeds in curves.items():
        common = sorted(set.intersection(*(set(curve) for curve in seeds)))
        if not common:
            continue
        # The earlier points from the steps before the last, so the last change is never 0 by construction.
        earlier = common[:-1] or common
        steps = [common[-1] if fraction == 1.0 else min(earlier, key=lambda step: abs(step - fraction * common[-1]))
                 for fraction in CONVERGENCE_AT]
        means = [sum(curve[step] for curve in seeds) / len(seeds) for step in steps]
        change = (means[-1] - means[-2]) / means[-2] if means[-2] else None
        out.append({"config": config, "n": len(seeds), "steps": steps, "values": means, "last_change": change})
    return out


def convergence_markdown(entries: Sequence[Mapping[str, Any]]) -> List[str]:
    """The ``ablation.md`` section of :func:`convergence`."""
    if not entries:
        return []
    lines = ["## Convergence", "",
             f"`{CONVERGENCE_TAG}` during training (the trainer's validation; mean over seeds) at "
             f"{', '.join(f'{round(100 * f)}%' for f in CONVERGENCE_AT)} of the steps, and its relative change "
             "over the last interval: a curve still falling there says the budget is short.", "",
             "| config | n | " + " | ".join(f"step {step}" for step in entries[0]["steps"]) + " | last change |",
             "|" + "---|" * (len(CONVERGENCE_AT) + 3)]
    for entry in entries:
        change = "-" if entry["last_change"] is None else f"{100 * entry['last_change']:+.1f}%"
        lines.append(f"| {entry['config']} | {entry['n']} | " + " | ".join(_fmt(v) for v in entry["values"])
                     + f" | {change} |")
    return lines + [""]


# ----------------------------------------------------------------------------- statistics


def mean_std_ci(values: Sequence[float]) -> Dict[str, Any]:
    """Mean, sample standard deviation and 95% t-interval of the mean (both null for one value)."""
    from scipy import stats

    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "ci95": None}
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "std": None, "ci95": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def summarize(runs: Sequence[Mapping[str, Any]], configs: Sequence[str]) -> List[Dict[str, Any]]:
    """Per config: ``n``, every metric's mean/std/ci95 over seeds, the mean loss shares."""
    summary = []
    for config in configs:
        mine = [run for run in runs if run["config"] == config]
        if not mine:
            continue
        names = sorted({key for run in mine for key in run["metrics"]}, key=_metric_order)
        metrics = {
            name: mean_std_ci([run["metrics"][name] for run in mine if run["metrics"].get(name) is not None])
            for name in names
        }
        shares = {term: round(sum(run["loss_shares"].get(term, 0.0) for run in mine) / len(mine), 6)
                  for term in LOSS_TERMS}
        summary.append({"config": config, "n": len(mine), "metrics": metrics, "loss_shares": shares})
    return summary


def _metric_order(name: str) -> Tuple[int, str]:
    order = list(TABLE_METRICS)
    return (order.index(name), name) if name in order else (len(order), name)


def paired_comparison(a: Mapping[int, float], b: Mapping[int, float]) -> Dict[str, Any]:
    """``a - b`` over the seeds both have: mean, 95% t-interval, paired t-test p (null for n < 2)."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    diffs = [a[seed] - b[seed] for seed in seeds]
    if not diffs:
        return {"n": 0, "mean_diff": None, "ci95": None, "p_value": None}
    interval = mean_std_ci(diffs)
    p_value = None
    if len(diffs) >= 2:
        test = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
        p_value = float(test.pvalue) if math.isfinite(test.pvalue) else None
    return {"n": len(diffs), "mean_diff": interval["mean"], "ci95": interval["ci95"], "p_value": p_value}


def compare(runs: Sequence[Mapping[str, Any]], configs: Sequence[str], baseline: str) -> List[Dict[str, Any]]:
    """Every config but the baseline against it, paired by seed, on :data:`COMPARED_METRICS`."""
    def by_seed(config: str, metric: str) -> Dict[int, float]:
        return {run["seed"]: run["metrics"][metric] for run in runs
                if run["config"] == config and run["metrics"].get(metric) is not None}

    comparisons = []
    for config in configs:
        if config == baseline:
            continue
        for metric in COMPARED_METRICS:
            result = paired_comparison(by_seed(config, metric), by_seed(baseline, metric))
            if result["n"] == 0:
                continue
            comparisons.append({"a": config, "b": baseline, "metric": metric, "mean_diff": result["mean_diff"],
                                "ci95": result["ci95"], "p_value": result["p_value"]})
    return comparisons


def ablation_json(runs: Sequence[Mapping[str, Any]], configs: Sequence[str], baseline: str) -> Dict[str, Any]:
    """The content of ``ablation.json``: ``runs``, ``summary``, ``comparisons`` (the issue's keys)."""
    keys = ("config", "seed", "metrics", "loss_shares", "train_seconds")
    return {
        "runs": [{key: run[key] for key in keys} for run in runs],
        "summary": summarize(runs, configs),
        "comparisons": compare(runs, configs, baseline),
    }


# ----------------------------------------------------------------------------- Markdown


def markdown_table(rows: List[Dict[str, Any]], command: str) -> str:
    """One row per run (weights, metrics, edge metrics, train time): ``results.md``."""
    head = ["config", "seed", "ssi", "silog", "grad"] + list(TABLE_METRICS) + ["train s"]
    lines = [f"Command: `{command}`", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        loss, m = row["loss"], row["metrics"]
        cells = [row["config"], str(row["seed"]), f"{loss['ssi_weight']:g}", f"{loss['silog_weight']:g}",
                 f"{loss['gradient_weight']:g}"]
        cells += [_fmt(m.get(key)) for key in TABLE_METRICS] + [f"{row['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _BETTER]
    return "\n".join(lines) + "\n"


_BETTER = ("Lower is better for abs_rel, rmse, mae and the edge_ errors; "
           "higher for d1-d3, edge_d1, boundary_f1.")


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pm(stat: Mapping[str, Any]) -> str:
    if stat.get("mean") is None:
        return "-"
    return _fmt(stat["mean"]) + ("" if stat.get("std") is None else f" ± {stat['std']:.4f}")


def _p(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2g}"


def _interval(ci: Optional[Sequence[float]]) -> str:
    return "none (n=1)" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def outside_interval(comparison: Mapping[str, Any]) -> bool:
    """True when the 95% interval of the paired difference excludes 0."""
    ci = comparison["ci95"]
    return ci is not None and (ci[0] > 0 or ci[1] < 0)


def ablation_markdown(data: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], command: str,
                      baseline: str, figures: Sequence[str], scalars: Mapping[str, RunScalars]) -> str:
    """``ablation.md``: mean ± std per config, the paired differences, the reading, the figures."""
    seeds = sorted({run["seed"] for run in data["runs"]})
    loss_of = {row["config"]: row["loss"] for row in rows}
    lines = [
        "# Loss study", "",
        f"Command: `{command}`", "",
        f"Seeds: {', '.join(map(str, seeds))}. Each config is trained once per seed (`train.seed`) on the same data "
        "and budget and evaluated from its last checkpoint. Mean ± sample standard deviation over seeds; loss "
        "shares are each term's part of the weighted total, averaged over the last 100 logged steps and the seeds.", "",
        "## Per config", "",
    ]
    head = ["config", "n", "weights ssi/silog/grad", "normalize", "grad space", "share ssi/silog/grad"]
    head += list(TABLE_METRICS) + ["train s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in data["summary"]:
        loss = loss_of.get(entry["config"], {})
        seconds = [run["train_seconds"] for run in data["runs"] if run["config"] == entry["config"]]
        weights = "/".join(f"{loss.get(k, 0):g}" for k in ("ssi_weight", "silog_weight", "gradient_weight"))
        shares = "/".join(f"{100 * entry['loss_shares'][t]:.0f}%" for t in LOSS_TERMS)
        space = loss.get("gradient_space", "-") if loss.get("gradient_weight") else "-"
        cells = [entry["config"], str(entry["n"]), weights, str(loss.get("normalize", "none")), space, shares]
        cells += [_pm(entry["metrics"].get(key, {})) for key in TABLE_METRICS]
        lines.append("| " + " | ".join(cells + [f"{sum(seconds) / len(seconds):.0f}"]) + " |")
    total = sum(run["train_seconds"] for run in data["runs"])
    lines += ["", _BETTER, "", f"Training time: {total:.0f} s over {len(data['runs'])} runs (the training loops' own "
              "clocks; data set-up and the final evaluations add to the wall time).", ""]
    lines += convergence_markdown(convergence(rows, scalars))
    lines += [f"## Paired differences against `{baseline}`", ""]
    comparisons = data["comparisons"]
    if comparisons:
        lines += ["| a | metric | mean diff (a - b) | 95% interval | p (paired t) | outside the interval |",
                  "|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['a']} | {c['metric']} | {c['mean_diff']:+.4f} | {_interval(c['ci95'])} | "
                         f"{_p(c['p_value'])} | {'yes' if outside_interval(c) else 'no'} |")
    else:
        lines.append(f"No config to compare with `{baseline}`.")
    lines += ["", "## Reading (generated)", ""] + reading(comparisons, baseline, len(seeds))
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(name).stem}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def reading(comparisons: Sequence[Mapping[str, Any]], baseline: str, n_seeds: int) -> List[str]:
    """Plain sentences: which paired differences are outside their 95% interval, and which way."""
    if not comparisons:
        return ["Nothing to compare."]
    if n_seeds < 2:
        return [f"One seed: no interval can be computed, so no difference from `{baseline}` can be told apart from "
                "seed-to-seed noise. Rerun with `--seeds 0 1 2` (or more)."]
    lines = []
    for config in dict.fromkeys(c["a"] for c in comparisons):
        mine = [c for c in comparisons if c["a"] == config]
        real = [c for c in mine if outside_interval(c)]
        if not real:
            lines.append(f"- `{config}` vs `{baseline}`: every difference is within its 95% interval "
                         "(not distinguishable from seed noise at this number of seeds).")
            continue
        parts = []
        for c in real:
            better = (c["mean_diff"] > 0) == (c["metric"] in HIGHER_IS_BETTER)
            parts.append(f"{c['metric']} {'better' if better else 'worse'} by {abs(c['mean_diff']):.4f} "
                         f"(interval {_interval(c['ci95'])}, p {_p(c['p_value'])})")
        within = [c["metric"] for c in mine if not outside_interval(c)]
        tail = f"; within the interval: {', '.join(within)}" if within else ""
        lines.append(f"- `{config}` vs `{baseline}`: " + "; ".join(parts) + tail + ".")
    lines += ["", f"{len(comparisons)} comparisons at 95% each: about {0.05 * len(comparisons):.1f} would fall "
              "outside their interval by chance alone, so a single borderline one is weak evidence."]
    return lines


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depth-ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(STUDY_CONFIGS),
                        help="configs to compare (names or YAML paths)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="train every config once per seed (train.seed); default: once, with the config's seed")
    parser.add_argument("--baseline", default=None,
                        help="config the others are compared with (default: baseline if listed, else the first)")
    parser.add_argument("--output-dir", required=True, help="run folders, ablation.{json,md}, PNGs and "
                                                             "results.{json,md} go here")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs (no matplotlib needed)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every config (same data, budget)")
    return parser


def ablate_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``depth-ablate``."""
    return run_command("depth-ablate", _parser(), lambda args: _ablate(args, argv), argv)


def _baseline(args: argparse.Namespace, labels: Sequence[str]) -> str:
    if args.baseline is None:
        return "baseline" if "baseline" in labels else labels[0]
    label = config_label(args.baseline)
    if label not in labels:
        raise UsageError(f"--baseline {args.baseline} is not among --configs {list(labels)}; list it there too")
    return label


def _ablate(args: argparse.Namespace, argv: Optional[List[str]]) -> int:
    configure_logging()
    out_dir = Path(args.output_dir)
    check_writable_folder(out_dir, "--output-dir")  # before the first of several trainings
    if args.seeds is not None and any(o.split("=", 1)[0].strip() == "train.seed" for o in args.overrides):
        raise UsageError("train.seed=... and --seeds were both given; --seeds sets train.seed per run, drop one")
    if not args.no_plots and importlib.util.find_spec("matplotlib") is None:  # known now, not after hours
        raise UsageError("the figures need matplotlib, which is not installed: pip install 'edgedepth[train]', "
                         "or pass --no-plots")
    command = "depth-ablate " + " ".join(argv if argv is not None else sys.argv[1:])
    runs = plan_runs(args.configs, args.seeds, out_dir)
    labels = [config_label(name) for name in args.configs]
    baseline = _baseline(args, labels)
    for run in runs:  # every config loads (names, keys, values) before the first hour of training
        finished_result(run, run_config(run, args.overrides))
    rows: List[Dict[str, Any]] = []
    for position, run in enumerate(runs, start=1):
        rows.append(run_experiment(run, args.overrides))
        if position < len(runs):  # so a long sweep that is stopped keeps what it finished; the last: below
            write_reports(out_dir, rows, labels, baseline, command, plots=False)
    figures = write_reports(out_dir, rows, labels, baseline, command, plots=not args.no_plots)
    print(markdown_table(rows, command))
    print(json.dumps({"ablation": str(out_dir / "ablation.md"), "figures": figures}))
    return 0


def write_reports(out_dir: Path, rows: List[Dict[str, Any]], labels: Sequence[str], baseline: str,
                  command: str, plots: bool) -> List[str]:
    """``results.{json,md}``, ``ablation.{json,md}`` and (with ``plots``) the PNGs; returns the PNG names."""
    write_json_atomic(out_dir / "results.json", {"command": command, "rows": rows})
    write_text_atomic(out_dir / "results.md", markdown_table(rows, command))
    data = ablation_json(rows, labels, baseline)
    write_json_atomic(out_dir / "ablation.json", data)
    scalars = {row["run_dir"]: read_scalars(Path(row["run_dir"])) for row in rows}  # read once, for both
    figures: List[str] = []
    if plots:
        from edgedepth.training.ablate_plots import write_figures

        figures = write_figures(out_dir, data, rows, scalars)
    write_text_atomic(out_dir / "ablation.md", ablation_markdown(data, rows, command, baseline, figures, scalars))
    return figures
