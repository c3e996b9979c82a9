"""Checkpoint -> self-describing, self-checked ONNX.

The TorchScript exporter (``dynamo=False``) is used on purpose: in eval mode with constant folding
it folds BatchNorm into Conv and gives the flat, static-opset graphs every TensorRT generation
(8.5 to 11) parses, with weights inside the file. The result is written to a temporary file,
checked (``onnx.checker``, then ONNX Runtime against PyTorch on random and structured inputs) and
only then renamed into place: a failed export leaves nothing half-written.
"""
from __future__ import annotations

import inspect
import linecache
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from edgedepth import __version__
from edgedepth.errors import ExportError
from edgedepth.export import onnx_info
from edgedepth.export.fp16 import Fp16Result, convert_to_fp16
from edgedepth.export.verify import Agreements, compare_probes, export_budget, probe_sizes, require, summary
from edgedepth.io import atomic_path, check_outputs, sha256_file
from edgedepth.onnxrt import cpu_session, run_session
from edgedepth.probes import probe_batches
from edgedepth.spec import ModelSpec

#: Opset 17: the newest that TensorRT 8.5/8.6's parser accepts (10.x takes up to 20).
DEFAULT_OPSET = 17
MIN_OPSET = 13
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
PathLike = Union[str, Path]


@dataclass
class OnnxExportResult:
    """What :func:`export_onnx` wrote: the FP32 ONNX, its spec and self-check figures."""

    path: Path
    spec: ModelSpec
    checks: Dict[str, Agreements] = field(default_factory=dict)  # size -> probe -> agreement
    simplifier: Optional[str] = None
    fp16: Optional[Fp16Result] = None


def load_model_for_export(checkpoint: PathLike):
    """``(model, spec)`` from a checkpoint, model in eval mode on the CPU."""
    try:
        from edgedepth.training.checkpoint import load_checkpoint
    except ImportError as exc:  # torch missing
        raise ExportError(f"exporting a checkpoint needs PyTorch ({exc}): `pip install edgedepth[train]`") from exc
    model, spec = load_checkpoint(checkpoint, map_location="cpu")
    return model.eval(), spec


def export_spec(
    spec: ModelSpec, checkpoint: PathLike, height: int, width: int, dynamic: bool, opset: int, batch: int
) -> ModelSpec:
    """The spec the ONNX carries: export size, dynamic flag and provenance."""
    import torch

    provenance = dict(spec.provenance)
    provenance.update(
        source="checkpoint",
        checkpoint=Path(checkpoint).name,
        checkpoint_sha256=sha256_file(checkpoint),
        config_hash=spec.config_hash,
        edgedepth_version=__version__,
        exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        exporter=f"torch.onnx TorchScript (torch {torch.__version__})",
        opset=opset,
        precision="fp32",
        export_batch=None if dynamic else batch,
    )
    return spec.replace(height=height, width=width, dynamic=dynamic, provenance=provenance)


_OP_PATTERNS = (
    re.compile(r"operator '([\w:.]+)'"),
    re.compile(r"\b((?:aten|prim|onnx|quantized)::\w+)"),
)


def unsupported_op_from_error(message: str) -> Optional[str]:
    """The op name a torch.onnx error message blames (``aten::histc``), or None."""
    for pattern in _OP_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group(1)
    return None


def export_error(exc: BaseException, opset: int) -> ExportError:
    """An ExportError naming the op torch.onnx could not export."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    op = unsupported_op_from_error(text)
    if op:
        return ExportError(
            f"the network uses {op}, which torch.onnx cannot export to ONNX opset {opset} ({first}); "
            f"replace it with supported ops in the model code, or try a newer --opset"
        )
    return ExportError(f"torch.onnx could not export the network ({type(exc).__name__}: {first})")


def control_flow_error(caught: List[warnings.WarningMessage]) -> Optional[ExportError]:
    """An ExportError for data-dependent Python control flow seen while tracing, else None.

    Tracing records one branch of an ``if tensor:`` and bakes it in: the ONNX would silently
    differ from the checkpoint on other inputs.
    """
    import torch

    for item in caught:
        if issubclass(item.category, torch.jit.TracerWarning) and "Python boolean" in str(item.message):
            source = linecache.getline(item.filename, item.lineno).strip()
            return ExportError(
                f"data-dependent control flow at {item.filename}:{item.lineno} ({source!r}): a tensor decides a "
                "Python `if`, which ONNX tracing bakes in; use torch.where or make the branch depend on shapes only"
            )
    return None


def _export_kwargs(opset: int, spec: ModelSpec, dynamic: bool) -> dict:
    import torch

    kwargs = dict(
        opset_version=opset,
        input_names=[spec.input_name],
        output_names=[spec.output_name],
        do_constant_folding=True,
    )
    if dynamic:
        kwargs["dynamic_axes"] = {spec.input_name: DYNAMIC_AXES, spec.output_name: DYNAMIC_AXES}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # torch >= 2.5: choose the TorchScript exporter explicitly
    return kwargs


def trace_to_onnx(model, spec: ModelSpec, path: Path, batch: int, dynamic: bool, opset: int) -> None:
    """torch.onnx.export ``model`` to ``path``; ExportError naming the op or the control flow on failure."""
    import torch

    dummy = torch.from_numpy(next(probe_batches(spec, batch=batch, extremes=False))[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.no_grad():
                torch.onnx.export(model, (dummy,), str(path), **_export_kwargs(opset, spec, dynamic))
        except OSError:  # writing the file failed (a full disk): the path and cause, not "could not export"
            raise
        except Exception as exc:  # torch.onnx raises UnsupportedOperatorError, SymbolicValueError, RuntimeError...
            raise export_error(exc, opset) from exc
    problem = control_flow_error(caught)
    if problem:
        raise problem


def simplify_graph(model) -> Tuple[object, Optional[str]]:
    """``(model, simplifier)``: onnxslim's simplified graph when installed, else the model as is."""
    try:
        import onnxslim
    except ImportError:
        return model, None
    try:
        slim = onnxslim.slim(model)
    except Exception as exc:  # a simplifier bug should not block an otherwise good export
        warnings.warn(
            f"onnxslim failed ({type(exc).__name__}: {exc}); keeping the unsimplified graph", stacklevel=1
        )
        return model, None
    return slim, f"onnxslim {getattr(onnxslim, '__version__', '?')}"


def check_self_contained(model, path: PathLike) -> None:
    """Refuse a graph whose weights live in external data files (the ONNX must travel alone)."""
    onnx = onnx_info.import_onnx()
    external = [i.name for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ExportError(
            f"{path} would keep {len(external)} weights in external data files; edgedepth ONNX files must be "
            "self-contained (models over 2 GB are not supported)"
        )


def _dedupe_value_info(model) -> None:
    """Keep the first shape annotation of each tensor (onnxslim can leave duplicates, which
    confuse converters that update one of them)."""
    seen, unique = set(), []
    for value in model.graph.value_info:
        if value.name not in seen:
            seen.add(value.name)
            unique.append(value)
    del model.graph.value_info[:]
    model.graph.value_info.extend(unique)


def finalize_graph(path: Path, spec: ModelSpec, simplify: bool) -> Optional[str]:
    """Simplify, name nodes, write the spec into metadata, check and re-save ``path``."""
    onnx = onnx_info.import_onnx()
    model = onnx.load(str(path))
    simplifier = None
    if simplify:
        model, simplifier = simplify_graph(model)
    if simplifier:
        spec.provenance["simplifier"] = simplifier
    onnx_info.ensure_node_names(model)
    _dedupe_value_info(model)
    onnx_info.set_spec(model, spec)
    check_self_contained(model, path)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, shape inference errors
        raise ExportError(f"the exported graph fails onnx.checker: {exc}") from exc
    onnx.save(model, str(path))
    return simplifier


def _torch_runner(model) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return run


def verify_against_torch(path: Path, model, spec: ModelSpec, batch: int) -> Dict[str, Agreements]:
    """ORT (CPU) vs PyTorch on random and structured probes, within the ``fp32`` budget row
    (max abs error <= 1e-4 x max_depth by default).

    A dynamic export is checked at several sizes with batch 2; a static one at its own shape.
    """
    session = cpu_session(path, error=ExportError)
    budget = export_budget("fp32")
    sizes = probe_sizes(spec.height, spec.width) if spec.dynamic else [(spec.height, spec.width)]
    checks = {}
    for height, width in sizes:
        probes = probe_batches(spec, batch=2 if spec.dynamic else batch, size=(height, width))
        agreements = compare_probes(probes, lambda b: run_session(session, b), _torch_runner(model), spec, budget,
                                    "the ONNX")
        require(agreements, f"ONNX vs PyTorch at {height}x{width}",
                "the exporter mistranslated an op; report it with the model code")
        checks[f"onnx_vs_torch_{height}x{width}"] = agreements
    return checks


def fp32_companion_path(output: PathLike) -> Path:
    """Where ``--fp16`` keeps the FP32 graph it converted: ``x.fp16.onnx`` -> ``x.onnx``, else ``x.fp32.onnx``."""
    path = Path(output)
    stem = path.stem
    name = f"{stem[: -len('.fp16')]}.onnx" if stem.endswith(".fp16") else f"{stem}.fp32.onnx"
    return path.with_name(name)


def _check_request(spec: ModelSpec, height: int, width: int, batch: int, opset: int) -> None:
    spec.replace(height=height, width=width)  # validates the size (multiples of 32)
    if batch < 1:
        raise ExportError(f"--batch {batch} is invalid: use a batch size of at least 1")
    if opset < MIN_OPSET:
        raise ExportError(
            f"--opset {opset} is too old: use {MIN_OPSET} or newer ({DEFAULT_OPSET} suits TensorRT 8.5 to 11)"
        )


def export_onnx(
    checkpoint: PathLike,
    output: PathLike,
    height: Optional[int] = None,
    width: Optional[int] = None,
    dynamic: bool = False,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    fp16: bool = False,
    log: Callable[[str], None] = print,
) -> OnnxExportResult:
    """Export ``checkpoint`` to a verified, self-describing ONNX at ``output``.

    ``height``/``width`` default to the checkpoint's training size; ``dynamic`` makes batch,
    height and width dynamic (height and width must stay multiples of 32). With ``fp16`` the
    verified FP16 graph goes to ``output`` and the FP32 graph it came from beside it
    (:func:`fp32_companion_path`). Every output is checked first (``edgedepth.io.check_outputs``):
    one that is the checkpoint, or whose folder cannot be written, is a UsageError before any work.
    """
    fp32_path = fp32_companion_path(output) if fp16 else Path(output)
    check_outputs({"--output": output, "--fp16's FP32 graph": fp32_path if fp16 else None},
                  {"--checkpoint": checkpoint})
    model, trained_spec = load_model_for_export(checkpoint)
    height, width = height or trained_spec.height, width or trained_spec.width
    _check_request(trained_spec, height, width, batch, opset)
    spec = export_spec(trained_spec, checkpoint, height, width, dynamic, opset, batch)
    with atomic_path(fp32_path) as tmp:
        trace_to_onnx(model, spec, tmp, batch, dynamic, opset)
        simplifier = finalize_graph(tmp, spec, simplify)
        checks = verify_against_torch(tmp, model, spec, batch)
    log(f"wrote {fp32_path} (FP32, {'dynamic' if dynamic else f'{batch}x3x{height}x{width}'}); {summary(checks)}")
    result = OnnxExportResult(fp32_path, spec, checks, simplifier)
    if fp16:
        result.fp16 = convert_to_fp16(fp32_path, output, log=log)
        log(f"wrote {output} (FP16); {summary(result.fp16.checks)}")
    return result

