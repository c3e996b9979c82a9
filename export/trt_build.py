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

import importlib
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Set, TextIO

from edgedepth.errors import ExportError
from edgedepth.io import sha256_file, write_bytes_atomic
from edgedepth.export import engine_meta, onnx_info
from edgedepth.export.engine_meta import GpuInfo
from edgedepth.export.profiles import Shape, ShapeProfile, format_shape, resolve_profile
from edgedepth.export.trt_compat import (
    INSTALL_HINT,
    BuildPlan,
    BuildRequest,
    TrtApi,
    check_request,
    parse_calibration_cache_header,
    plan_build,
    probe_api,
)

GIB = 1 << 30
Log = Callable[[str], None]


def import_tensorrt():
    """``import tensorrt`` or ExportError saying what to install."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise ExportError(f"`depth-export engine` needs TensorRT: {INSTALL_HINT} ({exc})") from exc


def _cuda_runtime():
    """cuda-python's runtime module (``cuda.bindings.runtime`` from 12.x, ``cuda.cudart`` before)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device`` (cuda-python, else pycuda)."""
    cudart = _cuda_runtime()
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(device)
        if int(err) != 0:
            raise ExportError(f"CUDA cannot query GPU {device} (cudaError {int(err)}): is the NVIDIA driver loaded?")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return GpuInfo(name.strip("\x00 "), f"{props.major}.{props.minor}")
    try:
        import pycuda.autoinit  # noqa: F401 - creates the context pycuda needs
        import pycuda.driver as driver
    except ImportError as exc:
        raise ExportError("no CUDA Python bindings found: `pip install cuda-python` (or pycuda on JetPack 5)") from exc
    gpu = driver.Device(device)
    major, minor = gpu.compute_capability()
    return GpuInfo(gpu.name(), f"{major}.{minor}")


# --------------------------------------------------------------------------- logging and feedback


def make_logger(trt, log: Log, verbose: bool = False):
    """A TensorRT logger that prints warnings and keeps errors for the final message."""
    severity = trt.ILogger.Severity

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: List[str] = []

        def log(self, level, message):  # noqa: A003 - TensorRT's callback name
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(str(message))
            elif level == severity.WARNING or verbose:
                log(f"TensorRT: {message}")

    return CollectingLogger()


class Spinner:
    """Build feedback where TensorRT has no progress monitor (8.x): elapsed time, refreshed in
    place on a terminal, one line every ``interval`` seconds otherwise."""

    FRAMES = "|/-\\"

    def __init__(self, label: str, stream: TextIO = sys.stderr, interval: float = 15.0) -> None:
        self.label, self.stream, self.interval = label, stream, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = 0.0

    def _run(self) -> None:
        tty = self.stream.isatty()
        frame = 0
        while not self._stop.wait(0.25 if tty else self.interval):
            elapsed = time.monotonic() - self._start
            if tty:
                self.stream.write(f"\r{self.FRAMES[frame % 4]} {self.label}: {elapsed:5.0f} s")
                frame += 1
            else:
                self.stream.write(f"{self.label}: {elapsed:.0f} s elapsed\n")
            self.stream.flush()

    def __enter__(self) -> "Spinner":
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.stream.isatty():
            self.stream.write("\r" + " " * (len(self.label) + 12) + "\r")


def make_progress_monitor(trt, stream: TextIO = sys.stderr):
    """An ``IProgressMonitor`` (9.0+) printing each build phase and its steps."""

    class PhasePrinter(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._depth: Dict[str, int] = {}
            self._steps: Dict[str, int] = {}
            self._start = time.monotonic()

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._depth[phase_name] = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self._steps[phase_name] = num_steps
            self._print(phase_name, f"start ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            if self._depth.get(phase_name, 0) == 0:
                self._print(phase_name, f"step {step + 1}/{self._steps.get(phase_name, '?')}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self._print(phase_name, "done")

        def _print(self, phase: str, what: str) -> None:
            indent = "  " * self._depth.get(phase, 0)
            stream.write(f"[{time.monotonic() - self._start:7.1f} s] {indent}{phase}: {what}\n")
            stream.flush()

    return PhasePrinter()


# --------------------------------------------------------------------------- per-generation helpers


class Trt8Helper:
    """TensorRT 8.5 / 8.6 (JetPack 5.1 / 6.0)."""

    generation = "8"

    def __init__(self, trt, api: TrtApi, plan: BuildPlan) -> None:
        self.trt, self.api, self.plan = trt, api, plan

    def network_flags(self) -> int:
        flags = 0
        for name in self.plan.network_flags:
            flags |= 1 << int(getattr(self.trt.NetworkDefinitionCreationFlag, name))
        return flags

    def set_workspace(self, config, nbytes: int) -> None:
        if hasattr(config, "set_memory_pool_limit"):  # 8.4+
            config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, nbytes)
        else:
            config.max_workspace_size = nbytes

    def set_precision(self, config, network, head: Sequence[str], other_nodes: Set[str] = frozenset()) -> None:
        for name in self.plan.clear_flags:
            config.clear_flag(getattr(self.trt.BuilderFlag, name))
        for name in self.plan.builder_flags:
            config.set_flag(getattr(self.trt.BuilderFlag, name))
        if self.plan.keep_head_fp32:
            keep_layers_fp32(self.trt, network, head, other_nodes)

    def set_calibrator(self, config, calibrator, profile) -> None:
        config.int8_calibrator = calibrator
        if profile is not None and hasattr(config, "set_calibration_profile"):
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

    def set_precision(self, config, network, head: Sequence[str], other_nodes: Set[str] = frozenset()) -> None:
        for name in self.plan.clear_flags:
            config.clear_flag(getattr(self.trt.BuilderFlag, name))
        for name in self.plan.builder_flags:  # only GPU_FALLBACK / VERSION_COMPATIBLE remain
            config.set_flag(getattr(self.trt.BuilderFlag, name))

    def set_calibrator(self, config, calibrator, profile) -> None:
        raise ExportError("TensorRT 11 has no INT8 calibrator: build a Q/DQ ONNX from `depth-calib`")


HELPERS = {"8": Trt8Helper, "10": Trt10Helper, "11": Trt11Helper}


def is_head_layer(layer_name: str, head: Sequence[str], other_nodes: Set[str] = frozenset()) -> bool:
    """True when a TensorRT layer comes from a head node. The parser names a layer after its
    ONNX node, adding ``_<n>`` when one node becomes several layers; a name that is itself
    another ONNX node is that node, not a head layer."""
    if layer_name in head:
        return True
    if layer_name in other_nodes:
        return False
    return any(layer_name.startswith(node + "_") and layer_name[len(node) + 1:].isdigit() for node in head)


def keep_layers_fp32(trt, network, head: Sequence[str], other_nodes: Set[str] = frozenset()) -> int:
    """Ask for FP32 on the layers parsed from the head nodes (8.x/10.x weak typing, honoured
    through PREFER_PRECISION_CONSTRAINTS); returns how many layers were pinned."""
    count = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if not is_head_layer(layer.name, head, other_nodes):
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
    sidecar: Dict[str, Any]
    cache_hit: bool
    seconds: float
    notes: List[str] = field(default_factory=list)


@dataclass
class OnnxFacts:
    """What the engine build needs to know about its ONNX, read without TensorRT."""

    path: Path
    sha256: str
    kind: str
    opset: int
    spec: Any
    input: onnx_info.TensorInfo
    head: List[str]
    qdq_zero_points_explicit: bool
    node_names: FrozenSet[str] = frozenset()


def read_onnx_facts(path) -> OnnxFacts:
    """Precision kind, opset, spec, input and head of an ONNX (ExportError when it is unusable)."""
    model = onnx_info.load_model(path, load_weights=False)
    inputs = onnx_info.graph_inputs(model)
    if len(inputs) != 1:
        raise ExportError(f"{path} has {len(inputs)} inputs; edgedepth engines take one image tensor")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    explicit = all(len(n.input) >= 3 for n in model.graph.node if n.op_type in onnx_info.QDQ_OPS)
    spec = onnx_info.read_spec(model)
    head = onnx_info.find_output_head(model, spec.output_name)
    names = frozenset(node.name for node in model.graph.node)
    return OnnxFacts(Path(path), sha256_file(path), onnx_info.onnx_precision(model), opset, spec, inputs[0], head, explicit, names)


def build_options(
    precision: str, workspace_gib, dla_core, version_compatible, hardware_compatibility, calib_sha256, plan: BuildPlan
) -> Dict[str, Any]:
    """Options recorded in the sidecar and the cache key."""
    return {
        "precision": precision,
        "workspace_gib": workspace_gib,
        "dla_core": dla_core,
        "version_compatible": version_compatible,
        "hardware_compatibility": hardware_compatibility,
        "calibration_cache_sha256": calib_sha256,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.builder_flags),
        "cleared_flags": list(plan.clear_flags),
    }


def _shapes(facts: OnnxFacts, profile: Optional[ShapeProfile]) -> Dict[str, Any]:
    if profile is None:
        return {facts.input.name: {"static": list(facts.input.shape)}}
    return {facts.input.name: profile.to_dict()}


def _parse(trt, network, logger, facts: OnnxFacts) -> None:
    parser = trt.OnnxParser(network, logger)
    if parser.parse(facts.path.read_bytes(), str(facts.path)):
        return
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    raise ExportError(f"TensorRT cannot parse {facts.path}: {'; '.join(errors) or 'no parser message'}")


def _configure(helper: Trt8Helper, builder, network, facts, profile, options, calibrator, timing_cache) -> Any:
    trt = helper.trt
    config = builder.create_builder_config()
    if options["workspace_gib"]:
        helper.set_workspace(config, int(options["workspace_gib"] * GIB))
    helper.set_precision(config, network, facts.head, set(facts.node_names) - set(facts.head))
    trt_profile = None
    if profile is not None:
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(profile.input_name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(trt_profile)
    if helper.plan.use_calibrator:
        helper.set_calibrator(config, calibrator, trt_profile)
    if options["dla_core"] is not None:
        _use_dla(trt, builder, config, options["dla_core"])
    if helper.plan.hardware_level:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, helper.plan.hardware_level)
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache)
        if not config.set_timing_cache(cache, False):
            raise ExportError("TensorRT rejected the --timing-cache file (written by another TensorRT version or GPU): delete it and build again")
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


@dataclass
class BuildJob:
    """Everything one build needs, decided before TensorRT does any work."""

    trt: Any
    api: TrtApi
    plan: BuildPlan
    facts: OnnxFacts
    profile: Optional[ShapeProfile]
    options: Dict[str, Any]
    gpu: GpuInfo
    calibrator: Any = None

    @property
    def shapes(self) -> Dict[str, Any]:
        return _shapes(self.facts, self.profile)

    @property
    def key(self) -> str:
        return engine_meta.cache_key(self.facts.sha256, self.api.version, self.gpu, self.options["precision"], self.shapes, self.options)


def _build_plan_bytes(job: BuildJob, timing_cache_path, log: Log) -> bytes:
    trt = job.trt
    helper = HELPERS[job.api.generation](trt, job.api, job.plan)
    logger = make_logger(trt, log)
    builder = trt.Builder(logger)
    network = builder.create_network(helper.network_flags())
    _parse(trt, network, logger, job.facts)
    timing = _timing_cache_bytes(timing_cache_path)
    config = _configure(helper, builder, network, job.facts, job.profile, job.options, job.calibrator, timing)
    data = _serialize(helper, builder, network, config, logger, f"building {job.options['precision']} engine")
    if timing_cache_path:
        write_bytes_atomic(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return data


def _calibration(api: TrtApi, onnx_path, calib_cache, calibrator):
    """The calibrator for an implicit-INT8 build from a ``depth-calib --cache`` file.

    The cache is checked against this ONNX and its preprocessing by the calibration stage (one
    implementation of the cache key): a stale or foreign cache is refused, not served.
    """
    if calibrator is not None or not calib_cache:
        return calibrator, None
    path = Path(calib_cache)
    if not path.is_file():
        raise ExportError(f"calibration cache {path} not found: make one with `depth-calib --cache`")
    parse_calibration_cache_header(path.read_bytes())
    if not api.calibrator:
        return None, sha256_file(path)
    from edgedepth.calib import build_int8_calibrator

    return build_int8_calibrator(onnx_path, path), sha256_file(path)


def prepare_build(
    onnx_path, precision: str, calib_cache=None, calibrator=None, workspace_gib=None, dla_core=None,
    shapes: Sequence[Optional[Shape]] = (None, None, None), version_compatible: bool = False,
    hardware_compatibility: str = "none", log: Log = print,
) -> BuildJob:
    """Check the request against the ONNX (no TensorRT needed), then against the installed
    TensorRT generation; ExportError saying what to do when it cannot be honoured."""
    facts = read_onnx_facts(onnx_path)
    request = BuildRequest(
        precision, facts.kind, bool(calib_cache), calibrator is not None, dla_core, version_compatible,
        hardware_compatibility, workspace_gib, facts.opset, facts.qdq_zero_points_explicit,
    )
    check_request(request)
    profile = resolve_profile(facts.input.name, facts.input.shape, facts.spec, *shapes)
    trt = import_tensorrt()
    api = probe_api(trt)
    plan = plan_build(api, request)
    for note in plan.notes:
        log(f"note: {note}")
    calibrator, calib_sha = _calibration(api, onnx_path, calib_cache, calibrator)
    options = build_options(precision, workspace_gib, dla_core, version_compatible, hardware_compatibility, calib_sha, plan)
    return BuildJob(trt, api, plan, facts, profile, options, gpu_info(), calibrator)


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
    job = prepare_build(
        onnx_path, precision, calib_cache, calibrator, workspace_gib, dla_core, (min_shape, opt_shape, max_shape),
        version_compatible, hardware_compatibility, log,
    )
    notes = list(job.plan.notes)
    hit = engine_meta.lookup_cache(cache_dir, job.key)
    if hit is not None:
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
    log(f"wrote {output} and {engine_meta.sidecar_path(output).name}: built in {seconds:.1f} s")
    return EngineResult(Path(output), sidecar, False, seconds, notes)


def _record(job: BuildJob, output, seconds: float) -> Dict[str, Any]:
    """Write and return the sidecar of a freshly built engine."""
    sidecar = engine_meta.engine_sidecar(
        job.facts.spec, job.api.version, job.api.generation, job.gpu, job.options["precision"], job.shapes,
        job.facts.path, job.facts.sha256, job.options, seconds, sha256_file(output), job.key,
    )
    engine_meta.write_sidecar(output, sidecar)
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
    engine_meta.write_sidecar(output, sidecar)
    log(f"engine cache hit ({cached_engine.name}, first built in {sidecar.get('build_seconds')} s): wrote {output}")
    return EngineResult(Path(output), sidecar, True, time.monotonic() - start, notes)
