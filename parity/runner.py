"""``depth-parity`` as a library call: reference + candidates over the inputs -> figures -> verdicts.

The reference is the checkpoint run by the PyTorch backend in FP32 (on the CPU by default, with
TF32 off on CUDA). Every candidate runs through :func:`edgedepth.runtime.open_backend`, the code
the device runs, on the same frames preprocessed with its own spec. All models see one input at a
time, so memory does not grow with the input set.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgedepth.agreement import Check, ComparisonAccumulator, badness, deciding_check, format_figure, judge
from edgedepth.budget import BUDGET_KEYS, PRECISIONS, Budget, Budgets, load_budgets
from edgedepth.metrics import DepthMetricAccumulator, compute_depth_metrics
from edgedepth.parity.artifacts import Artifact, ParityUsageError, describe_artifact, feed_spec, spec_findings
from edgedepth.parity.inputs import (
    DEFAULT_MAX_IMAGES,
    InputSet,
    ParityInput,
    builtin_inputs,
    dataset_inputs,
    image_inputs,
)
from edgedepth.preprocess import preprocess
from edgedepth.spec import ModelSpec

Log = Callable[[str], None]
#: Inputs shown in the side-by-side picture (the first ones of the set).
SIDE_BY_SIDE_ROWS = 6
TASK_KEYS = ("abs_rel", "rmse", "d1")
REFERENCE_DEVICES = ("cpu", "cuda")
SPEC_CHECK = "spec"


@dataclass
class ParityOptions:
    """What ``depth-parity`` was asked to do (see ``depth-parity --help``)."""

    checkpoint: str
    candidates: List[str]
    images: Optional[str] = None
    gt_data: Optional[str] = None
    split: Optional[str] = None
    budget: Optional[str] = None
    report_dir: str = "parity-report"
    max_images: int = DEFAULT_MAX_IMAGES
    reference_device: str = "cpu"
    threads: Optional[int] = None
    ort_providers: Optional[List[str]] = None
    pictures: bool = True


@dataclass
class Snapshot:
    """The maps of one input kept for a picture."""

    name: str
    image: np.ndarray
    input_order: str
    reference: np.ndarray
    candidate: np.ndarray


@dataclass
class CandidateRun:
    """One candidate's state while the inputs stream through (an accumulator; judged at the end by
    :func:`finish_candidate`, which returns a frozen :class:`CandidateResult`)."""

    label: str
    artifact: Artifact
    budget: Budget
    feed: ModelSpec
    #: Every input (NaN/Inf, the report's per-input table) ...
    comparison: ComparisonAccumulator
    #: ... and the inputs the budget judges (the same object when it judges all of them).
    judged: ComparisonAccumulator = field(init=False)
    backend_detail: str = ""
    task: Optional[DepthMetricAccumulator] = None
    inference_s: float = 0.0
    side_by_side: List[Snapshot] = field(default_factory=list)
    #: figure -> (badness, snapshot) of the worst input so far, for the heatmap.
    worst: Dict[str, Tuple[float, Snapshot]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.judged = self.comparison  # a separate accumulator once the inputs are known to hold stress patterns

    def tracked_figures(self) -> List[str]:
        """Figures whose worst input is kept for the heatmap: every budget figure, NaN and AbsRel."""
        figures = ["nonfinite", "abs_rel"] + [BUDGET_KEYS[key].figure for key in self.budget.limits]
        return list(dict.fromkeys(figures))

    def judges(self, item: ParityInput) -> bool:
        return item.group in self.budget.judged_groups

    @property
    def judged_description(self) -> str:
        """``"all 13 inputs"`` or ``"5 of 13 inputs (scenes)"``."""
        judged, total = len(self.judged.per_input), len(self.comparison.per_input)
        return f"all {total} inputs" if judged == total else f"{judged} of {total} inputs ({self.budget.judged_inputs})"


@dataclass(frozen=True)
class CandidateResult:
    """A candidate judged: what streamed, its set-level figures, task metrics and one check per limit."""

    stream: CandidateRun
    #: Set-level figures of the judged inputs (NaN/Inf counted over every input).
    figures: Dict[str, float]
    #: Set-level figures of every input.
    figures_all: Dict[str, float]
    checks: Tuple[Check, ...]
    task_metrics: Optional[Dict[str, Dict[str, float]]] = None

    @property
    def label(self) -> str:
        return self.stream.label

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def deciding(self) -> Check:
        return deciding_check(self.checks)

    def verdict_line(self) -> str:
        """The verdict on one line, e.g.

        ``PASS  model.fp16.onnx [fp16, onnxruntime (CPU)]: abs_rel 0.0002 <= 0.001 (21% of budget); worst input ...``.
        """
        deciding, stream = self.deciding, self.stream
        usage = deciding.usage_text()
        line = (f"{'PASS' if self.passed else 'FAIL'}  {self.label} "
                f"[{stream.artifact.precision}, {stream.backend_detail}]: "
                f"{deciding.sentence()}" + (f" ({usage})" if usage else ""))
        if deciding.worst_input:
            line += f"; worst input: {deciding.worst_input} ({format_figure(deciding.figure, deciding.worst_value)})"
        others = [check.sentence() for check in self.checks if not check.passed and check is not deciding]
        return line + (f"; also failing: {'; '.join(others)}" if others else "")


@dataclass
class ParityResult:
    """Everything the report shows."""

    options: ParityOptions
    reference: Artifact
    reference_detail: str
    inputs: InputSet
    budgets: Budgets
    candidates: List[CandidateResult]
    reference_task: Optional[Dict[str, float]] = None
    input_names: List[str] = field(default_factory=list)
    reference_inference_s: float = 0.0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(run.passed for run in self.candidates)


# --------------------------------------------------------------------------- set-up


def _unique_labels(paths: Sequence[str]) -> List[str]:
    labels: List[str] = []
    for path in paths:
        label = Path(path).name
        if label in labels:  # same file name in two folders: tell them apart by the folder
            label = f"{Path(path).parent.name}/{label}"
        while label in labels:
            label += "'"
        labels.append(label)
    return labels


def prepare_candidates(options: ParityOptions, reference: Artifact, budgets: Budgets) -> List[CandidateRun]:
    """Describe every candidate (precision, spec findings, feed size) before any model runs."""
    runs = []
    for label, path in zip(_unique_labels(options.candidates), options.candidates):
        artifact = describe_artifact(path)
        if artifact.precision not in PRECISIONS:
            raise ParityUsageError(
                f"candidate {path} has precision {artifact.precision!r}; "
                f"parity budgets exist for {', '.join(PRECISIONS)}"
            )
        artifact.findings = spec_findings(artifact, reference)
        feed = feed_spec(artifact, reference)
        runs.append(CandidateRun(label, artifact, budgets[artifact.precision], feed,
                                 ComparisonAccumulator(reference.spec.min_depth)))
    return runs


def _attach_accumulators(run: CandidateRun, inputs: InputSet, spec: ModelSpec,
                         task_options: Optional[Dict[str, Any]]) -> None:
    # Only the built-in set has stress inputs; elsewhere "scenes" judges every input as "all" does.
    separate = run.budget.judged_inputs != "all" and inputs.kind == "built-in"
    run.judged = ComparisonAccumulator(spec.min_depth) if separate else run.comparison
    run.task = DepthMetricAccumulator(**task_options, reduction="images") if task_options else None


def make_inputs(options: ParityOptions, spec: ModelSpec) -> InputSet:
    """The input set the options name (built-in when neither --images nor --gt-data)."""
    if options.images and options.gt_data:
        raise ParityUsageError("pass --images (frames) or --gt-data (a dataset with depth), not both")
    if options.max_images < 1:
        raise ParityUsageError(f"--max-images {options.max_images} must be 1 or more")
    if options.gt_data:
        return dataset_inputs(options.gt_data, options.checkpoint, spec, options.split, options.max_images)
    if options.images:
        return image_inputs(options.images, options.max_images)
    return builtin_inputs(spec)


def _check_options(options: ParityOptions) -> None:
    if not options.candidates:
        raise ParityUsageError("pass at least one candidate: --candidates MODEL.onnx [MODEL.engine ...]")
    if options.reference_device not in REFERENCE_DEVICES:
        raise ParityUsageError(f"--reference-device {options.reference_device!r}: "
                               f"use one of {', '.join(REFERENCE_DEVICES)}")
    _check_report_dir(options)


def _check_report_dir(options: ParityOptions) -> None:
    """The report can be written, and overwrites no input: checked before any model runs."""
    from edgedepth.io import check_outputs, check_writable_folder

    report_dir = Path(options.report_dir)
    check_writable_folder(report_dir, "--report-dir")
    if options.pictures:
        check_writable_folder(report_dir / "pictures", "--report-dir")
    inputs = {"--checkpoint": options.checkpoint, "--budget": options.budget, "--images": options.images,
              **{f"--candidates {path}": path for path in options.candidates}}
    check_outputs({"--report-dir (report.json)": report_dir / "report.json",
                   "--report-dir (report.md)": report_dir / "report.md"}, inputs)


# --------------------------------------------------------------------------- backends


def _exact_fp32_reference(device: str) -> None:
    """On CUDA, PyTorch may run convolutions in TF32 (10-bit mantissa): not an FP32 reference."""
    if device == "cuda":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def open_reference(options: ParityOptions) -> Any:
    from edgedepth.runtime.backend import open_backend

    _exact_fp32_reference(options.reference_device)
    return open_backend(options.checkpoint, "pytorch", device=options.reference_device, threads=options.threads)


def open_candidate(run: CandidateRun, options: ParityOptions) -> Any:
    from edgedepth.runtime.backend import open_backend

    extra: Dict[str, Any] = {}
    if run.artifact.kind == "onnxruntime":
        extra = {"providers": options.ort_providers, "threads": options.threads}
    elif run.artifact.kind == "pytorch":
        extra = {"device": options.reference_device, "threads": options.threads}
    return open_backend(str(run.artifact.path), run.artifact.kind, **extra)


def _open_candidate(stack: contextlib.ExitStack, run: CandidateRun, options: ParityOptions) -> Any:
    return _opened(stack, f"candidate {run.artifact.path}", lambda: open_candidate(run, options))


def _opened(stack: contextlib.ExitStack, what: str, opener: Callable[[], Any]) -> Any:
    from edgedepth.errors import EdgeDepthError

    try:
        return stack.enter_context(opener())
    except EdgeDepthError as exc:
        raise ParityUsageError(f"cannot open {what}: {exc}") from exc


# --------------------------------------------------------------------------- the loop


def _infer(backend: Any, batch: np.ndarray) -> Tuple[np.ndarray, float]:
    started = time.perf_counter()
    depth = backend.infer(batch)
    return depth[0, 0], time.perf_counter() - started


def _task_options(inputs: InputSet, spec: ModelSpec) -> Dict[str, Any]:
    crop = inputs.details.get("crop", "none")
    return {"min_depth": spec.min_depth, "max_depth": spec.max_depth, "crop": None if crop == "none" else crop,
            "alignment": inputs.details.get("alignment", "none")}


def _task_row(item: ParityInput, reference: np.ndarray, candidate: np.ndarray,
              options: Dict[str, Any]) -> Dict[str, float]:
    assert item.depth is not None, "task metrics are computed only for inputs with ground truth"
    ref = compute_depth_metrics(reference, item.depth, item.mask, **options)
    cand = compute_depth_metrics(candidate, item.depth, item.mask, **options)
    return {"task_abs_rel": cand["abs_rel"], "task_d1": cand["d1"],
            "task_abs_rel_increase": cand["abs_rel"] - ref["abs_rel"], "task_d1_decrease": ref["d1"] - cand["d1"]}


def _keep_snapshots(run: CandidateRun, row: Dict[str, Any], snapshot: Snapshot, judged: bool) -> None:
    if len(run.side_by_side) < SIDE_BY_SIDE_ROWS:
        run.side_by_side.append(snapshot)
    for figure in run.tracked_figures():
        if row.get(figure) is None or not (judged or figure == "nonfinite"):
            continue
        score = badness(figure, float(row[figure]))
        if figure not in run.worst or score > run.worst[figure][0]:
            run.worst[figure] = (score, snapshot)


def _infer_candidate(run: CandidateRun, backend: Any, batch: np.ndarray) -> Tuple[np.ndarray, float]:
    """The candidate's depth; on its first input a failure (e.g. depth of another shape) means it
    cannot be compared at all: a usage error, as a candidate of another input size is. Later
    failures are the candidate failing while it runs (exit 1)."""
    from edgedepth.errors import EdgeDepthError

    if run.comparison.per_input:
        return _infer(backend, batch)
    try:
        return _infer(backend, batch)
    except EdgeDepthError as exc:
        raise ParityUsageError(f"candidate {run.artifact.path} cannot be compared with the checkpoint: {exc}") from exc


def _measure_candidate(run: CandidateRun, backend: Any, item: ParityInput, spec: ModelSpec, ref_batch: np.ndarray,
                       ref_depth: np.ndarray, task_options: Optional[Dict[str, Any]]) -> None:
    same = run.feed.preprocessing_key() == spec.preprocessing_key()
    batch = ref_batch if same else preprocess(item.image, run.feed, item.input_order)
    depth, seconds = _infer_candidate(run, backend, batch)
    run.inference_s += seconds
    judged = run.judges(item)
    extra: Dict[str, Any] = {"group": item.group, "judged": judged}
    if task_options is not None and run.task is not None and item.depth is not None:
        extra.update(_task_row(item, ref_depth, depth, task_options))
        run.task.add(depth, item.depth, item.mask)
    run.comparison.add(item.name, ref_depth, depth, extra)
    if judged and run.judged is not run.comparison:
        run.judged.add(item.name, ref_depth, depth, extra)
    _keep_snapshots(run, run.comparison.per_input[-1],
                    Snapshot(item.name, item.image, item.input_order, ref_depth, depth), judged)


def measure(inputs: InputSet, reference: Any, runs: List[CandidateRun], backends: List[Any],
            log: Log) -> Dict[str, Any]:
    """Stream the inputs through the reference and every candidate; returns reference facts."""
    spec = reference.spec
    task_options = _task_options(inputs, spec) if inputs.has_ground_truth else None
    reference_task = DepthMetricAccumulator(**task_options, reduction="images") if task_options else None
    for run in runs:
        _attach_accumulators(run, inputs, spec, task_options)
    names, reference_s = [], 0.0
    for index, item in enumerate(inputs, start=1):
        ref_batch = preprocess(item.image, spec, item.input_order)
        ref_depth, seconds = _infer(reference, ref_batch)
        reference_s += seconds
        if reference_task is not None and item.depth is not None:
            reference_task.add(ref_depth, item.depth, item.mask)
        for run, backend in zip(runs, backends):
            _measure_candidate(run, backend, item, spec, ref_batch, ref_depth, task_options)
        names.append(item.name)
        log(f"[{index}/{inputs.count}] {item.name}")
    if not names:
        raise ParityUsageError(f"{inputs.description}: no image could be read")
    return {"names": names, "inference_s": reference_s, "task": reference_task.compute() if reference_task else None}


# --------------------------------------------------------------------------- after the loop


def _task_summary(run: CandidateRun, reference_task: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    assert run.task is not None, "task metrics are accumulated whenever the reference has them"
    candidate = run.task.compute()
    change = {key: candidate[key] - reference_task[key] for key in TASK_KEYS}
    return {"reference": {k: reference_task[k] for k in TASK_KEYS}, "candidate": {k: candidate[k] for k in TASK_KEYS},
            "change": change}


def finish_candidate(run: CandidateRun, reference: Artifact,
                     reference_task: Optional[Dict[str, float]]) -> CandidateResult:
    """Set-level figures, task metrics and the budget checks of one candidate."""
    figures_all = run.comparison.compute()
    figures = dict(run.judged.compute(), nonfinite=figures_all["nonfinite"])
    task_metrics = _task_summary(run, reference_task) if reference_task is not None else None
    if task_metrics is not None:
        figures["task_abs_rel_increase"] = task_metrics["change"]["abs_rel"]
        figures["task_d1_decrease"] = -task_metrics["change"]["d1"]
    worst = {figure: run.judged.worst_input(figure) for figure in run.tracked_figures()}
    worst["nonfinite"] = run.comparison.worst_input("nonfinite")
    spec_errors = [finding.spec_field for finding in run.artifact.spec_errors]
    nonfinite, *limits = judge(figures, run.budget, reference.spec.max_depth, worst, reference_task is not None)
    return CandidateResult(run, figures, figures_all, (nonfinite, spec_check(spec_errors), *limits), task_metrics)


def spec_check(spec_errors: Sequence[str]) -> Check:
    """Always on: the candidate's spec must match the checkpoint's in every field the output depends on."""
    text = ("spec matches the checkpoint" if not spec_errors
            else f"spec differs from the checkpoint ({', '.join(spec_errors)})")
    return Check(SPEC_CHECK, "spec_errors", "max", 0.0, float(len(spec_errors)), note=text)


def run_parity(options: ParityOptions, log: Log = print) -> ParityResult:
    """Compare every candidate with the checkpoint and write the report to ``options.report_dir``.

    Raises ParityUsageError / ConfigError (usage errors: exit 2) before any model runs when a
    file, budget or input is wrong. The verdict is ``result.passed``.
    """
    from edgedepth.parity.report import write_report

    started = time.perf_counter()
    _check_options(options)
    budgets = load_budgets(options.budget)
    reference = describe_artifact(options.checkpoint, "checkpoint")
    if reference.kind != "pytorch":
        raise ParityUsageError(f"--checkpoint {options.checkpoint} is not a PyTorch checkpoint (.pt): "
                               "the reference is the trained model")
    runs = prepare_candidates(options, reference, budgets)
    inputs = make_inputs(options, reference.spec)
    log(f"inputs: {inputs.description}")
    with contextlib.ExitStack() as stack:
        ref_backend = _opened(stack, f"checkpoint {options.checkpoint}", lambda: open_reference(options))
        backends = [_open_candidate(stack, run, options) for run in runs]
        for run, backend in zip(runs, backends):
            run.backend_detail = backend.detail
        facts = measure(inputs, ref_backend, runs, backends, log)
        reference_detail = ref_backend.detail
    results = [finish_candidate(run, reference, facts["task"]) for run in runs]
    result = ParityResult(options, reference, reference_detail, inputs, budgets, results, facts["task"], facts["names"],
                          facts["inference_s"], time.perf_counter() - started)
    write_report(result, Path(options.report_dir), log)
    return result
