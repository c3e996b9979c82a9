"""The calibration report: one record, written as JSON (for tools) and Markdown (for people)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from edgedepth.io import write_json_atomic, write_text_atomic

PathLike = Union[str, Path]
_FIGURE_ROWS = (
    ("abs_rel", "AbsRel (INT8 vs FP32)", "{:.4%}"),
    ("d1_agreement", "δ1 agreement", "{:.5f}"),
    ("rmse", "RMSE (m)", "{:.4g}"),
    ("max_abs_error", "max abs error (m)", "{:.4g}"),
    ("mean_abs_error", "mean abs error (m)", "{:.4g}"),
    ("p99_abs_error", "p99 abs error (m)", "{:.4g}"),
    ("nonfinite", "NaN/Inf values", "{}"),
)


@dataclass
class CalibrationReport:
    """Everything ``depth-calib`` did and measured."""

    status: str  # "passed" | "failed" | "cache-only"
    source_onnx: str
    source_sha256: str
    method: str
    target: str = "tensorrt"
    #: The TensorRT version the graph is made for (``--trt-version``; None for --target cpu).
    trt_version: Optional[str] = None
    #: What the unquantized layers compute in ("fp16" for TensorRT 11, else "fp32").
    unquantized_precision: str = "fp32"
    output: Optional[str] = None
    over_budget_output: Optional[str] = None
    quantizer: Optional[str] = None
    quantizer_version: Optional[str] = None
    quantizer_note: Optional[str] = None
    images: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    kept_in_higher_precision: List[Dict[str, str]] = field(default_factory=list)
    budget: Dict[str, Any] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)
    figures: Dict[str, Any] = field(default_factory=dict)
    #: The budget's verdict per figure (:class:`edgedepth.agreement.Check` as a dict).
    checks: List[Dict[str, Any]] = field(default_factory=list)
    initial_figures: Dict[str, Any] = field(default_factory=dict)
    fallback: Optional[Dict[str, Any]] = None
    #: ``depth-export check`` of the written graph per TensorRT version: {"8.6": [violations], ...}.
    tensorrt_compatibility: Dict[str, List[str]] = field(default_factory=dict)
    tensorrt_cache: Optional[Dict[str, Any]] = None
    timings_s: Dict[str, float] = field(default_factory=dict)
    edgedepth_version: str = ""
    created_at: str = ""

    @property
    def passed(self) -> bool:
        return self.status in ("passed", "cache-only")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def report_paths(base: PathLike) -> tuple:
    """``model.int8.onnx`` -> (``model.int8.report.json``, ``model.int8.report.md``)."""
    base = Path(base)
    stem = base.name[: -len(base.suffix)] if base.suffix in (".onnx", ".calib", ".cache", ".json") else base.name
    return base.with_name(f"{stem}.report.json"), base.with_name(f"{stem}.report.md")


def _figures_table(report: CalibrationReport) -> List[str]:
    limits = {check["figure"]: check for check in report.checks}
    lines = ["| figure | INT8 vs FP32 | before fallback | budget |", "|---|---|---|---|"]
    for key, label, fmt in _FIGURE_ROWS:
        value, initial = report.figures.get(key), report.initial_figures.get(key)
        check = limits.get(key)
        bound = ("≥ " if check["bound"] == "min" else "≤ ") + fmt.format(check["limit"]) if check else "—"
        shown = fmt.format(value) if value is not None else "—"
        before = fmt.format(initial) if initial is not None and report.fallback else "—"
        lines.append(f"| {label} | {shown} | {before} | {bound} |")
    return lines


def _kept_table(report: CalibrationReport) -> List[str]:
    lines = ["| node | op | why |", "|---|---|---|"]
    lines += [f"| `{item['node']}` | {item['op_type']} | {item['reason']} |"
              for item in report.kept_in_higher_precision]
    return lines


def _fallback_lines(fallback: Dict[str, Any]) -> List[str]:
    lines = ["", "## Fallback search", "", f"Stopped: {fallback['stopped']}.", "",
             "| step | node kept | AbsRel | δ1 agreement | within budget |", "|---|---|---|---|---|"]
    for index, step in enumerate(fallback["steps"], 1):
        figures = step["figures"]
        lines.append(f"| {index} | `{step['node']}` | {figures['abs_rel']:.4%} | {figures['d1_agreement']:.5f} | "
                     f"{'yes' if step['passed'] else 'no: ' + '; '.join(step['failures'])} |")
    measured = [item for item in fallback["ranking"] if item.get("abs_rel_alone") is not None]
    if measured:
        lines += ["",
                  "Most harmful INT8 nodes (AbsRel vs FP32 with only that node in INT8, subset of held-out images):",
                  "", "| node | op | input noise | AbsRel alone |", "|---|---|---|---|"]
        lines += [f"| `{m['node']}` | {m['op_type']} | {m['noise']:.2%} | {m['abs_rel_alone']:.4%} |"
                  for m in measured[:15]]
    return lines


def to_markdown(report: CalibrationReport) -> str:
    """The report for people."""
    images = report.images
    lines = [
        f"# INT8 calibration report: {report.status.upper()}", "",
        f"- source: `{report.source_onnx}` (sha256 {report.source_sha256[:16]}…)",
        f"- output: `{report.output or report.over_budget_output or 'none written'}`",
        f"- quantizer: {report.quantizer} ({report.quantizer_version}); method: {report.method}; "
        f"target: {report.target}"
        + (f" (TensorRT {report.trt_version}; unquantized layers {report.unquantized_precision})"
           if report.trt_version else "")
        + (f"; {report.quantizer_note}" if report.quantizer_note else ""),
        f"- images: {images.get('calibration_images', 0)} calibration, {images.get('held_out_images', 0)} held out; "
        f"sources: {'; '.join(images.get('sources', []))}",
        "- time: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.timings_s.items()),
    ]
    lines += [f"- warning: {w}" for w in report.warnings]
    if report.figures:
        lines += ["", "## Accuracy against FP32 (held-out images)", ""] + _figures_table(report)
    if report.failures:
        lines += ["", "Over budget: " + "; ".join(report.failures) + "."]
    if report.kept_in_higher_precision:
        lines += ["", "## Kept in higher precision", ""] + _kept_table(report)
    if report.fallback:
        lines += _fallback_lines(report.fallback)
    if report.tensorrt_compatibility:
        lines += ["", "## TensorRT compatibility (`depth-export check`)", ""]
        lines += _compatibility_lines(report.tensorrt_compatibility)
    if report.tensorrt_cache:
        cache = report.tensorrt_cache
        lines += ["", "## TensorRT calibration cache (implicit INT8, TensorRT 8.5-10.x)", "",
                  f"- `{cache['path']}` + key `{cache['key_file']}` ({cache['algorithm']}, "
                  f"TensorRT {cache['tensorrt']}, "
                  f"{'reused' if cache['reused'] else 'calibrated on ' + str(cache['batches']) + ' batches'})"]
    return "\n".join(lines) + "\n"


def _compatibility_lines(found: Dict[str, List[str]]) -> List[str]:
    lines = []
    for version, violations in found.items():
        verdict = "parses" if not violations else f"refused ({len(violations)} violation(s)), e.g. {violations[0]}"
        lines.append(f"- TensorRT {version}: {verdict}")
    return lines


def write_report(report: CalibrationReport, json_path: PathLike, markdown_path: PathLike) -> None:
    """Write both forms atomically."""
    write_json_atomic(json_path, report.to_dict())
    write_text_atomic(markdown_path, to_markdown(report))
