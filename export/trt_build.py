"""ONNX -> TensorRT engine: one builder, a small named helper per TensorRT generation.

What differs between generations lives in :class:`Trt8Helper` (8.5/8.6), :class:`Trt10Helper`
(9.x/10.x) and :class:`Trt11Helper` (11.x): network creation flags, the workspace API, precision
flags vs strongly typed networks, the INT8 calibrator, per-layer precision, and build feedback
(``IProgressMonitor`` where it exists, a spinner thread otherwise). Which one runs is decided
by feature probes (:mod:`edgedepth.export.trt_compat`); what may be built is decided before
TensorRT does any work, and a requested precision is never lowered.

TensorRT and the CUDA bindings are imported only when an engine is built.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence

from edgedepth.errors import EdgeDepthError, ExportError
from edgedepth.export import conformance, engine_meta, onnx_info
from edgedepth.export.profiles import Shape, ShapeProfile, format_shape, resolve_profile
from edgedepth.export.trt_compat import (
    BuildPlan,
    BuildRequest,
    check_request,
    parse_calibration_cache_header,
    plan_build,
)
from edgedepth.export.trt_progress import Spinner, make_progress_monitor
from edgedepth.io import check_outputs, check_writable_folder, sha256_file, write_bytes_atomic
from edgedepth.trt.generation import TrtApi, parse_version, probe_api, target_of_api
from edgedepth.trt.imports import import_tensorrt
from edgedepth.trt.logger import make_logger
from edgedepth.trt.network import create_network, parse_onnx
from edgedepth.trt.platform import GpuInfo, query_gpu
from edgedepth.trt.sidecar import BuildOptions, EngineSidecar, sidecar_path, write_sidecar

GIB = 1 << 30
Log = Callable[[str], None]


# --------------------------------------------------------------------------- per-generation helpers


class Trt8Helper:
    """TensorRT 8.5 / 8.6 (JetPack 5.1 / 6.0)."""

    generation = "8"

    def __init__(self, trt, api: TrtApi, plan: BuildPlan) -> None:
        self.trt, self.api, self.plan = trt, api, plan

    def set_workspace(self, config, nbytes: int) -> None:
        # 8.4+; max_workspace_size is deprecated
        config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, nbytes)

    def set_flags(self, config) -> None:
        for name in self.plan.clear_flags:
            config.clear_flag(getattr(self.trt.BuilderFlag, name))
        for name in self.plan.builder_flags:
            config.set_flag(getattr(self.trt.BuilderFlag, name))

    def set_precision(self, config, network, pinned: Sequence[str], other_nodes: FrozenSet[str] = frozenset()) -> int:
        """Builder flags, then FP32 for the layers of ``pinned`` ONNX nodes; how many layers were pinned."""
        self.set_flags(config)
        return keep_layers_fp32(self.trt, network, pinned, other_nodes) if self.plan.keep_head_fp32 else 0

    def set_calibrator(self, config, calibrator, profile) -> None:
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)

    @contextmanager
    def feedback(self, config, label: str) -> Iterator[None]:
        with Spinner(label):
            yield


class Trt10Helper(Trt8Helper):
    """TensorRT 9.x / 10.x (JetPack 6.1/6.2 = 10.3, desktop): progress monitor, strongly typed opt-in."""

    generation = "10"

    @contextmanager
    def feedback(self, config, label: str) -> Iterator[None]:
        monitor = make_progress_monitor(self.trt)  # held here: TensorRT keeps no Python reference
        config.progress_monitor = monitor
        yield


class Trt11Helper(Trt10Helper):
    """TensorRT 11.x: always strongly typed; no precision flags, calibrator or layer precision."""

    generation = "11"

    def set_precision(self, config, network, pinned: Sequence[str], other_nodes: FrozenSet[str] = frozenset()) -> int:
        self.set_flags(config)  # only TF32 (cleared), GPU_FALLBACK and VERSION_COMPATIBLE remain
        return 0

    def set_calibrator(self, config, calibrator, profile) -> None:
        raise ExportError("TensorRT 11 has no INT8 calibrator: build a Q/DQ ONNX from `depth-calib --trt-version 11`")


HELPERS = {"8": Trt8Helper, "10": Trt10Helper, "11": Trt11Helper}


def is_pinned_layer(layer_name: str, pinned: Sequence[str], other_nodes: FrozenSet[str] = frozenset()) -> bool:
    """True when a TensorRT layer comes from a pinned ONNX node. The parser names a layer after its
    node, adding ``_<n>`` when one node becomes several layers (a global counter:
    onnx-tensorrt@8.6-GA ``ImporterContext.hpp:326-333``); a name that is itself another ONNX
    node is that node."""
    if layer_name in pinned:
        return True
    if layer_name in other_nodes:
        return False
    return any(layer_name.startswith(node + "_") and layer_name[len(node) + 1:].isdigit() for node in pinned)


def keep_layers_fp32(trt, network, pinned: Sequence[str], other_nodes: FrozenSet[str] = frozenset()) -> int:
    """Ask for FP32 on the layers parsed from ``pinned`` nodes (8.x/10.x weak typing, honoured
    through PREFER_PRECISION_CONSTRAINTS); returns how many layers were pinned."""
    count = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if not is_pinned_layer(layer.name, pinned, other_nodes):
            continue
        layer.precision = trt.float32
        for output in range(layer.num_outputs):
            layer.set_output_type(output, trt.float32)
        count += 1
    return count


# --------------------------------------------------------------------------- the build


@dataclass
class EngineResult:
    """What :func:`build_engine` produced."""

    path: Path
    sidecar: EngineSidecar
    cache_hit: bool
    seconds: float
    notes: List[str] = field(default_factory=list)


@dataclass
class OnnxFacts:
    """What the engine build needs to know about its ONNX, read without TensorRT."""

    path: Path
    sha256: str
    kind: str
    spec: Any
    input: onnx_info.TensorInfo
    head: List[str]
    qdq_float_type: str
    node_names: FrozenSet[str] = frozenset()


def read_onnx_facts(path) -> OnnxFacts:
    """Precision kind, spec, input and head of an ONNX (ExportError when it is unusable)."""
    model = onnx_info.load_model(path, load_weights=False)
    inputs = onnx_info.graph_inputs(model)
    if len(inputs) != 1:
        raise ExportError(f"{path} has {len(inputs)} inputs; edgedepth engines take one image tensor")
    spec = onnx_info.read_spec(model, str(path), against_graph=True)
    head = onnx_info.find_output_head(model, spec.output_name)
    names = frozenset(node.name for node in model.graph.node)
    kind = onnx_info.onnx_precision(model)
    float_type = "fp16" if kind == "int8" and onnx_info.is_fp16_graph(model) else "fp32"
    return OnnxFacts(Path(path), sha256_file(path), kind, spec, inputs[0], head, float_type, names)


def _shapes(facts: OnnxFacts, profile: Optional[ShapeProfile]) -> Dict[str, Any]:
    if profile is None:
        return {facts.input.name: {"static": list(facts.input.shape)}}
    return {facts.input.name: profile.to_dict()}


@dataclass
class Calibration:
    """An implicit-INT8 build's calibrator (serving a ``depth-calib --cache`` file) and what the
    cache's key file says must stay in higher precision."""

    calibrator: Any = None
    cache_sha256: Optional[str] = None
    kept_nodes: Sequence[str] = ()


@dataclass
class BuildJob:
    """Everything one build needs, decided before TensorRT does any work."""

    trt: Any
    api: TrtApi
    plan: BuildPlan
    facts: OnnxFacts
    profile: Optional[ShapeProfile]
    options: BuildOptions
    gpu: GpuInfo
    calibration: Calibration

    @property
    def shapes(self) -> Dict[str, Any]:
        return _shapes(self.facts, self.profile)

    @property
    def key(self) -> str:
        return engine_meta.cache_key(self.facts.sha256, self.api.version, self.gpu, self.options.precision, self.shapes,
                                     self.options.to_dict())


def _configure(helper: Trt8Helper, builder, network, job: BuildJob, timing_cache: Optional[bytes]) -> Any:
    trt = helper.trt
    config = builder.create_builder_config()
    if job.options.workspace_gib:
        helper.set_workspace(config, int(job.options.workspace_gib * GIB))
    helper.set_precision(config, network, job.options.fp32_nodes, job.facts.node_names - set(job.options.fp32_nodes))
    trt_profile = None
    if job.profile is not None:
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(job.profile.input_name, job.profile.min, job.profile.opt, job.profile.max)
        config.add_optimization_profile(trt_profile)
    if helper.plan.use_calibrator:
        helper.set_calibrator(config, job.calibration.calibrator, trt_profile)
    if job.options.dla_core is not None:
        _use_dla(trt, builder, config, job.options.dla_core)
    if helper.plan.hardware_level:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, helper.plan.hardware_level)
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache)
        if not config.set_timing_cache(cache, False):
            raise ExportError(
                "TensorRT rejected the --timing-cache file (written by another TensorRT version or GPU): "
                "delete it and build again"
            )
    return config


def _use_dla(trt, builder, config, core: int) -> None:
    available = int(getattr(builder, "num_DLA_cores", 0))
    if core >= available:
        raise ExportError(
            f"--dla-core {core} asked, but this device has {available} DLA core(s) (Orin Nano, Thor and desktop GPUs "
            "have none): drop --dla-core, or pick a core below the count"
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core


def _timing_cache_bytes(path) -> Optional[bytes]:
    """Saved timing cache bytes; ``b""`` (a new, empty cache) when the file does not exist yet;
    None when no timing cache was asked for. (Without one set, ``get_timing_cache`` has nothing
    to save.)"""
    if not path:
        return None
    return Path(path).read_bytes() if Path(path).is_file() else b""


def _serialize(helper: Trt8Helper, builder, network, config, logger, label: str) -> bytes:
    with helper.feedback(config, label):
        plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = "; ".join(logger.errors[-3:]) or "see the TensorRT messages above"
        raise ExportError(f"TensorRT failed to build the engine: {detail}")
    return bytes(plan)


def _build_plan_bytes(job: BuildJob, timing_cache_path, log: Log) -> bytes:
    trt = job.trt
    helper = HELPERS[job.api.generation](trt, job.api, job.plan)
    logger = make_logger(trt, log)
    builder = trt.Builder(logger)
    network = create_network(trt, builder, job.plan.network_flags)
    parse_onnx(trt, network, logger, job.facts.path)
    config = _configure(helper, builder, network, job, _timing_cache_bytes(timing_cache_path))
    calibrator = job.calibration.calibrator
    try:
        data = _serialize(helper, builder, network, config, logger, f"building {job.options.precision} engine")
    finally:
        if calibrator is not None:
            calibrator.close()
    if calibrator is not None:
        calibrator.check()  # errors inside TensorRT's callbacks were swallowed by its trampolines
    if timing_cache_path:
        write_bytes_atomic(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return data


def check_calibration_cache(onnx_path, calib_cache) -> Dict[str, Any]:
    """The key file of a ``depth-calib --cache`` file, checked without TensorRT: the cache exists,
    starts with a TensorRT header, and its key file is well formed and matches this ONNX and its
    preprocessing (one implementation of the cache key: the calibration stage's). ExportError or
    CalibrationCacheError saying what to do otherwise."""
    from edgedepth.calib.legacy import verify_cache_for_onnx

    path = Path(calib_cache)
    if not path.is_file():
        raise ExportError(f"calibration cache {path} not found: make one with `depth-calib --cache`")
    parse_calibration_cache_header(path.read_bytes())
    return verify_cache_for_onnx(onnx_path, path)


def _calibration(api: TrtApi, onnx_path, calib_cache, calibrator, key_file: Optional[Dict[str, Any]],
                 log: Log) -> Calibration:
    """The calibrator for an implicit-INT8 build from a ``depth-calib --cache`` file whose
    ``key_file`` :func:`check_calibration_cache` returned before TensorRT was imported: a stale or
    foreign cache is refused, not served. The nodes depth-calib kept in higher precision are pinned
    to FP32 in the engine: with a calibrator, TensorRT may run any unconstrained layer in INT8.
    """
    if calibrator is not None or not calib_cache or key_file is None:
        return Calibration(calibrator)
    from edgedepth.calib.legacy import build_int8_calibrator

    path = Path(calib_cache)
    built = build_int8_calibrator(onnx_path, path)  # the same key, checked again as the calibrator opens it
    _warn_other_major(api, key_file, path, log)
    return Calibration(built, sha256_file(path), tuple(key_file.get("higher_precision_nodes") or ()))


def _warn_other_major(api: TrtApi, key_file: Dict[str, Any], path: Path, log: Log) -> None:
    written_by = str(key_file.get("tensorrt_version") or "")
    try:
        other = written_by and parse_version(written_by)[0] != parse_version(api.version)[0]
    except EdgeDepthError:
        other = False
    if other:
        log(f"warning: {path} was calibrated with TensorRT {written_by} and this is {api.version}: TensorRT may refuse "
            "the cache (then recalibrate here with `depth-calib --cache`)")


def _request(facts: OnnxFacts, precision: str, calib_cache, calibrator, dla_core, version_compatible,
             hardware_compatibility, workspace_gib, gpu: Optional[GpuInfo]) -> BuildRequest:
    return BuildRequest(
        precision, facts.kind, bool(calib_cache), calibrator is not None, dla_core, version_compatible,
        hardware_compatibility, workspace_gib, facts.qdq_float_type, gpu.integrated if gpu else None,
    )


def _options(request: BuildRequest, plan: BuildPlan, facts: OnnxFacts, calibration: Calibration) -> BuildOptions:
    pinned = tuple(facts.head) + tuple(node for node in calibration.kept_nodes if node not in facts.head)
    return BuildOptions(
        precision=request.precision, workspace_gib=request.workspace_gib, dla_core=request.dla_core,
        version_compatible=request.version_compatible, hardware_compatibility=request.hardware_compatibility,
        calibration_cache_sha256=calibration.cache_sha256, strongly_typed=plan.strongly_typed,
        builder_flags=plan.builder_flags, cleared_flags=plan.clear_flags,
        fp32_nodes=pinned if plan.keep_head_fp32 else (), unquantized_precision=plan.unquantized_precision,
    )


def prepare_build(
    onnx_path, precision: str, calib_cache=None, calibrator=None, workspace_gib=None, dla_core=None,
    shapes: Sequence[Optional[Shape]] = (None, None, None), version_compatible: bool = False,
    hardware_compatibility: str = "none", log: Log = print,
) -> BuildJob:
    """Check the request against the ONNX (no TensorRT needed), then against the installed
    TensorRT generation, GPU and ONNX parser rules; ExportError saying what to do when it cannot
    be honoured."""
    facts = read_onnx_facts(onnx_path)
    args = (precision, calib_cache, calibrator, dla_core, version_compatible, hardware_compatibility, workspace_gib)
    check_request(_request(facts, *args, gpu=None))
    profile = resolve_profile(facts.input.name, facts.input.shape, facts.spec, *shapes)
    # A missing, foreign or stale calibration cache is found without TensorRT too.
    key_file = check_calibration_cache(onnx_path, calib_cache) if calib_cache and calibrator is None else None
    trt = import_tensorrt(
        "`depth-export engine`", "Without it the ONNX runs on ONNX Runtime (depth-run --model model.onnx)"
    )
    api = probe_api(trt)
    gpu = query_gpu()
    request = _request(facts, *args, gpu=gpu)
    plan = plan_build(api, request)
    conformance.require_conformance(facts.path, target_of_api(api), str(facts.path))
    for note in plan.notes:
        log(f"note: {note}")
    calibration = _calibration(api, onnx_path, calib_cache, calibrator, key_file, log)
    return BuildJob(trt, api, plan, facts, profile, _options(request, plan, facts, calibration), gpu, calibration)


def check_engine_outputs(onnx_path, output, calib_cache=None, timing_cache=None, cache_dir=None) -> None:
    """UsageError before any work (TensorRT not needed) when an output is an input (the engine, its
    sidecar or the timing cache over the ONNX or the calibration cache), two outputs are one file,
    or an output's folder cannot be written."""
    calib_key = None
    if calib_cache:
        from edgedepth.calib.legacy import cache_sidecar_path

        calib_key = cache_sidecar_path(calib_cache)
    check_outputs({"--output": output, "the engine's sidecar": sidecar_path(output), "--timing-cache": timing_cache},
                  {"--onnx": onnx_path, "--calib-cache": calib_cache, "--calib-cache's key file": calib_key})
    if cache_dir:
        check_writable_folder(cache_dir, "--cache-dir")


def build_engine(
    onnx_path,
    output,
    precision: str = "fp16",
    calib_cache=None,
    calibrator=None,
    workspace_gib: Optional[float] = None,
    timing_cache=None,
    dla_core: Optional[int] = None,
    min_shape: Optional[Shape] = None,
    opt_shape: Optional[Shape] = None,
    max_shape: Optional[Shape] = None,
    version_compatible: bool = False,
    hardware_compatibility: str = "none",
    cache_dir=None,
    log: Log = print,
) -> EngineResult:
    """Build (or fetch from ``cache_dir``) a TensorRT engine for ``onnx_path`` at ``output``,
    with its ``.json`` sidecar. ``calibrator`` is an optional TensorRT INT8 calibrator object
    (8.x/10.x) from ``depth-calib``; ``calib_cache`` a cache file it wrote.
    """
    check_engine_outputs(onnx_path, output, calib_cache, timing_cache, cache_dir)
    job = prepare_build(
        onnx_path, precision, calib_cache, calibrator, workspace_gib, dla_core, (min_shape, opt_shape, max_shape),
        version_compatible, hardware_compatibility, log,
    )
    notes = list(job.plan.notes)
    hit = engine_meta.lookup_cache(cache_dir, job.key)
    if hit is not None:
        if job.calibration.calibrator is not None:
            job.calibration.calibrator.close()
        return _from_cache(hit, output, log, notes)
    log(f"{job.api.label} (generation {job.api.generation} helper), {job.gpu.name} (compute "
        f"{job.gpu.compute_capability}), {precision}, {_shape_text(job.shapes)}")
    start = time.monotonic()
    data = _build_plan_bytes(job, timing_cache, log)
    seconds = time.monotonic() - start
    write_bytes_atomic(output, data)
    sidecar = _record(job, output, seconds)
    if cache_dir:
        engine_meta.store_in_cache(cache_dir, job.key, Path(output), sidecar)
    log(f"wrote {output} and {sidecar_path(output).name}: built in {seconds:.1f} s")
    return EngineResult(Path(output), sidecar, False, seconds, notes)


def _record(job: BuildJob, output, seconds: float) -> EngineSidecar:
    """Write and return the sidecar of a freshly built engine."""
    sidecar = EngineSidecar(
        model_spec=job.facts.spec, tensorrt_version=job.api.version, tensorrt_generation=job.api.generation,
        gpu=job.gpu, precision=job.options.precision, shapes=job.shapes,
        source_onnx={"name": job.facts.path.name, "sha256": job.facts.sha256}, build_options=job.options,
        build_seconds=seconds, engine_sha256=sha256_file(output), cache_key=job.key,
    )
    write_sidecar(output, sidecar)
    return sidecar


def _shape_text(shapes: Dict[str, Any]) -> str:
    (name, entry), = shapes.items()
    if "static" in entry:
        return f"{name} {format_shape(entry['static'])}"
    return f"{name} min {format_shape(entry['min'])} opt {format_shape(entry['opt'])} max {format_shape(entry['max'])}"


def _from_cache(hit, output, log: Log, notes: List[str]) -> EngineResult:
    cached_engine, sidecar = hit
    start = time.monotonic()
    engine_meta.place_file(cached_engine, output)
    write_sidecar(output, sidecar)
    log(f"engine cache hit ({cached_engine.name}, first built in {sidecar.build_seconds} s): wrote {output}")
    return EngineResult(Path(output), sidecar, True, time.monotonic() - start, notes)
