"""The parity report: ``report.json`` (machine-readable, comparable across devices), ``report.md``
(the summary a signer reads) and ``pictures/`` (PNG heatmaps, histograms, side-by-side depth).

Layout of ``--report-dir``::

    report.json                      every figure, per input and over the set, with host and versions
    report.md                        verdicts, summary table, checks, findings, per-input tables
    pictures/<candidate>_worst.png         input | reference | candidate | |error| on the worst input
    pictures/<candidate>_histogram.png     absolute and relative error histograms, budget marked
    pictures/<candidate>_side_by_side.png  reference vs candidate depth on the first inputs
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgedepth.agreement import format_figure
from edgedepth.budget import BUDGET_KEYS
from edgedepth.io import write_json_atomic, write_text_atomic
from edgedepth.metrics import format_metrics_table
from edgedepth.spec import ModelSpec

if TYPE_CHECKING:  # the runner imports this module; the types only annotate
    from edgedepth.parity.runner import CandidateResult, ParityResult

REPORT_FORMAT = "edgedepth-parity"
REPORT_FORMAT_VERSION = 1
SUMMARY_COLUMNS = (
    ("max_abs_error", "max abs"), ("mean_abs_error", "mean abs"), ("p99_abs_error", "p99 abs"),
    ("max_rel_error", "max rel"), ("p99_rel_error", "p99 rel"), ("abs_rel", "AbsRel"), ("rmse", "RMSE"),
    ("d1_agreement", "δ1 agr."), ("nonfinite", "NaN/Inf"),
)
PICTURE_KINDS = ("worst", "histogram", "side_by_side")
Log = Callable[[str], None]
Pictures = Dict[str, Dict[str, str]]  # candidate label -> picture kind -> PNG path


# --------------------------------------------------------------------------- host facts


def _read_first_line(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").replace("\x00", "").splitlines()[0].strip() or None
    except (OSError, IndexError):
        return None


def host_info() -> Dict[str, Any]:
    """Where the run happened: enough to compare reports from a desktop and a Jetson."""
    info: Dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        # Jetsons name their module here and in the L4T release file (JetPack version).
        "device_model": _read_first_line("/proc/device-tree/model"),
        "l4t_release": _read_first_line("/etc/nv_tegra_release"),
        "cuda_device": _cuda_device(),
    }
    return info


def _cuda_device() -> Optional[str]:
    import sys

    torch = sys.modules.get("torch")  # already imported by the reference; never imported here
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


@functools.lru_cache(maxsize=1)
def package_versions() -> Dict[str, Optional[str]]:
    """edgedepth, Python and the optional packages (torch, onnxruntime, TensorRT, ...) with versions."""
    from edgedepth.cli import environment_report

    return environment_report()


# --------------------------------------------------------------------------- JSON


def json_safe(value: Any) -> Any:
    """NaN/Inf -> None (standard JSON has neither), numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def candidate_dict(run: CandidateResult, pictures: Pictures) -> Dict[str, Any]:
    count = max(len(run.stream.comparison.per_input), 1)
    return {
        "label": run.label,
        **run.stream.artifact.to_dict(),
        "backend": run.stream.backend_detail,
        "passed": run.passed,
        "verdict": run.verdict_line(),
        "deciding_check": run.deciding.to_dict(),
        "budget": run.stream.budget.to_dict(),
        "checks": [check.to_dict() for check in run.checks],
        "not_checked": list(run.stream.budget.skipped_keys(run.task_metrics is not None)),
        "judged_inputs": run.stream.judged_description,
        "figures": run.figures,
        "figures_all_inputs": run.figures_all,
        "task_metrics": run.task_metrics,
        "per_input": run.stream.comparison.per_input,
        "histograms": {kind: histogram.to_dict() for kind, histogram in run.stream.judged.histograms.items()},
        "inference_ms_mean": 1000.0 * run.stream.inference_s / count,
        "pictures": pictures.get(run.label, {}),
    }


def report_dict(result: ParityResult, pictures: Optional[Pictures] = None) -> Dict[str, Any]:
    """The whole report as plain JSON-able data (``pictures``: label -> kind -> PNG path)."""
    pictures = pictures or {}
    count = max(len(result.input_names), 1)
    return json_safe({
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "verdict": "PASS" if result.passed else "FAIL",
        "passed": result.passed,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": dataclasses.asdict(result.options),
        "host": host_info(),
        "versions": dict(package_versions()),
        "reference": {**result.reference.to_dict(), "backend": result.reference_detail,
                      "inference_ms_mean": 1000.0 * result.reference_inference_s / count,
                      "task_metrics": result.reference_task},
        "inputs": {**result.inputs.to_dict(), "names": result.input_names},
        "budgets": {precision: budget.to_dict() for precision, budget in result.budgets.items()},
        "candidates": [candidate_dict(run, pictures) for run in result.candidates],
        "seconds": result.seconds,
    })


# --------------------------------------------------------------------------- Markdown


def _cell(figure: str, value: Any) -> str:
    return "-" if value is None else format_figure(figure, value)


def summary_table(runs: List[CandidateResult]) -> str:
    """One row per candidate: verdict, precision, backend, then the set-level figures."""
    header = ["candidate", "precision", "backend", "verdict", "judged on"] + [title for _, title in SUMMARY_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|---|" + "---:|" * len(SUMMARY_COLUMNS)]
    for run in runs:
        cells = [f"`{run.label}`", run.stream.artifact.precision, run.stream.backend_detail,
                 "**PASS**" if run.passed else "**FAIL**", run.stream.judged_description]
        cells += [_cell(figure, run.figures.get(figure)) for figure, _ in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks_table(run: CandidateResult) -> str:
    lines = ["| check | value | limit | result | budget used | worst input |", "|---|---:|---:|---|---:|---|"]
    for check in run.checks:
        worst = f"{check.worst_input} ({_cell(check.figure, check.worst_value)})" if check.worst_input else "-"
        bound = "<=" if check.bound == "max" else ">="
        lines.append(f"| {check.key} | {_cell(check.figure, check.value)} | "
                     f"{bound} {_cell(check.figure, check.limit)} | "
                     f"{'pass' if check.passed else '**FAIL**'} | {check.usage_text()} | {worst} |")
    return "\n".join(lines)


def per_input_table(run: CandidateResult) -> str:
    columns = [("max_abs_error", "max abs"), ("mean_abs_error", "mean abs"), ("p99_abs_error", "p99 abs"),
               ("abs_rel", "AbsRel"), ("d1_agreement", "δ1 agr."), ("nonfinite", "NaN/Inf")]
    if run.task_metrics is not None:
        columns += [("task_abs_rel", "AbsRel vs GT"), ("task_abs_rel_increase", "Δ AbsRel vs GT")]
    lines = ["| input | group | " + " | ".join(title for _, title in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    for row in run.stream.comparison.per_input:
        group = row["group"] if row["judged"] else f"{row['group']} (not judged)"
        lines.append(f"| {row['name']} | {group} | "
                     + " | ".join(_cell(figure, row.get(figure)) for figure, _ in columns) + " |")
    return "\n".join(lines)


def task_table(result: ParityResult) -> str:
    """Task metrics against ground truth: the reference, each candidate, and each change."""
    rows: Dict[str, Dict[str, Any]] = {"reference (PyTorch FP32)": result.reference_task or {}}
    for run in result.candidates:
        if run.task_metrics is not None:
            rows[run.label] = run.task_metrics["candidate"]
            rows[f"{run.label} − reference"] = run.task_metrics["change"]
    keys = ("abs_rel", "rmse", "d1")
    return format_metrics_table({name: {key: row[key] for key in keys} for name, row in rows.items()})


def _header_lines(result: ParityResult) -> List[str]:
    ref, spec = result.reference, result.reference.spec
    budgets = "; ".join(f"{precision}: {budget.describe(spec.max_depth)}"
                        for precision, budget in result.budgets.items())
    versions = package_versions()
    return [
        f"# Parity report: {'PASS' if result.passed else 'FAIL'}",
        "",
        f"- Reference: `{ref.path.name}` (sha256 `{ref.sha256[:16]}`), {result.reference_detail}, FP32; "
        f"input {spec.height}x{spec.width} {spec.color_order}, depth {spec.min_depth:g}-{spec.max_depth:g} m",
        f"- Inputs: {result.inputs.description}",
        f"- Budgets: {budgets}",
        f"- Host: {platform.platform()} ({platform.machine()}); "
        + ", ".join(f"{name} {version}" for name, version in versions.items() if version),
        "",
    ]


def _candidate_section(run: CandidateResult, pictures: Dict[str, str]) -> List[str]:
    artifact = run.stream.artifact
    source = "engine sidecar" if artifact.kind == "tensorrt" else "graph"
    inference_ms = 1000 * run.stream.inference_s / max(len(run.stream.comparison.per_input), 1)
    lines = [
        f"## `{run.label}`: {'PASS' if run.passed else 'FAIL'}",
        "",
        f"- File: `{artifact.path}` ({artifact.size_bytes / 1e6:.1f} MB, sha256 `{artifact.sha256[:16]}`)",
        f"- Precision (read from the {source}): {artifact.precision}; "
        f"backend: {run.stream.backend_detail}; mean inference {inference_ms:.1f} ms",
        "",
    ]
    lines += ([f"- **{finding.severity}**: {finding.message}" for finding in artifact.findings]
              + ([""] if artifact.findings else []))
    skipped = run.stream.budget.skipped_keys(run.task_metrics is not None)
    lines += [f"- Not checked without ground truth (--gt-data): {', '.join(skipped)}", ""] if skipped else []
    lines += [f"- Budget limits judged on {run.stream.judged_description}; NaN/Inf on every input", ""]
    lines += [checks_table(run), ""]
    lines += [f"![{kind}](pictures/{Path(path).name})" for kind, path in pictures.items()] + [""]
    lines += ["<details><summary>Per input</summary>", "", per_input_table(run), "", "</details>", ""]
    return lines


def to_markdown(result: ParityResult, pictures: Optional[Pictures] = None) -> str:
    """The report a signer reads (``pictures``: label -> kind -> PNG path)."""
    pictures = pictures or {}
    lines = _header_lines(result)
    lines += ["## Verdicts", "", "```"] + [run.verdict_line() for run in result.candidates] + ["```", ""]
    lines += ["## Summary (candidate vs reference over the judged inputs; NaN/Inf over every input)", "",
              summary_table(result.candidates), ""]
    if result.reference_task is not None:
        lines += ["## Task metrics against ground truth", "", task_table(result), ""]
    for run in result.candidates:
        lines += _candidate_section(run, pictures.get(run.label, {}))
    return "\n".join(lines)


# --------------------------------------------------------------------------- pictures


def slug(label: str) -> str:
    """A file-name-safe form of a candidate label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "candidate"


def _histogram_markers(run: CandidateResult, max_depth: float) -> Dict[str, Sequence[Tuple[float, str]]]:
    markers: Dict[str, List[Tuple[float, str]]] = {"abs": [], "rel": []}
    for key in run.stream.budget.limits:
        figure = BUDGET_KEYS[key].figure
        relative = figure.endswith("rel_error") or figure == "abs_rel"
        kind = "abs" if figure.endswith("abs_error") else "rel" if relative else None
        if kind:
            markers[kind].append((run.stream.budget.limit(key, max_depth), f"{figure} budget"))
    return {kind: values for kind, values in markers.items()}


def _heatmap_snapshot(run: CandidateResult) -> Any:
    """(figure, snapshot) of the worst input for the deciding figure (AbsRel for the spec check)."""
    for figure in (run.deciding.figure, "abs_rel", "nonfinite"):
        if figure in run.stream.worst:
            return figure, run.stream.worst[figure][1]
    return None, None


def _figure_on(run: CandidateResult, input_name: str, figure: str) -> str:
    row = next((row for row in run.stream.comparison.per_input if row["name"] == input_name), {})
    return format_figure(figure, row.get(figure))


def write_pictures(result: ParityResult, folder: Path) -> Pictures:
    """The three PNGs of every candidate; returns label -> kind -> path."""
    return {run.label: _candidate_pictures(run, result.reference.spec, folder) for run in result.candidates}


def _candidate_pictures(run: CandidateResult, spec: ModelSpec, folder: Path) -> Dict[str, str]:
    from edgedepth.parity import pictures

    written: Dict[str, str] = {}
    name = slug(run.label)
    figure, snapshot = _heatmap_snapshot(run)
    if snapshot is not None:
        title = (f"{run.label}: worst input for {figure}: {snapshot.name} "
                 f"({figure} {_figure_on(run, snapshot.name, figure)})")
        image = pictures.worst_input_picture(snapshot.image, snapshot.reference, snapshot.candidate, spec.min_depth,
                                             spec.max_depth, title, snapshot.input_order)
        written["worst"] = str(pictures.write_png(folder / f"{name}_worst.png", image))
    markers = _histogram_markers(run, spec.max_depth)
    image = pictures.histogram_picture(run.stream.judged.histograms,
                                       f"{run.label}: error over every pixel of {run.stream.judged_description}",
                                       markers)
    written["histogram"] = str(pictures.write_png(folder / f"{name}_histogram.png", image))
    rows = [(s.name, s.image, s.input_order, s.reference, s.candidate) for s in run.stream.side_by_side]
    image = pictures.side_by_side_picture(rows, spec.min_depth, spec.max_depth,
                                          f"{run.label}: reference vs candidate depth")
    written["side_by_side"] = str(pictures.write_png(folder / f"{name}_side_by_side.png", image))
    return written


def write_report(result: ParityResult, report_dir: Path, log: Log = print) -> Dict[str, Path]:
    """Write pictures (unless disabled), ``report.json`` and ``report.md``; returns their paths."""
    report_dir = Path(report_dir)
    pictures = write_pictures(result, report_dir / "pictures") if result.options.pictures else {}
    paths = {"json": report_dir / "report.json", "markdown": report_dir / "report.md"}
    write_json_atomic(paths["json"], report_dict(result, pictures))
    write_text_atomic(paths["markdown"], to_markdown(result, pictures) + "\n")
    log(f"report: {paths['markdown']} and {paths['json']}")
    return paths
