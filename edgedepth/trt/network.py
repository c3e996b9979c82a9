"""Network creation and ONNX parsing, shared by the engine build and the INT8 calibration build."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Tuple

from edgedepth.errors import DeviceError
from edgedepth.trt.generation import TrtApi, network_flags


def network_flag_names(api: TrtApi, strongly_typed: bool = False) -> Tuple[str, ...]:
    """EXPLICIT_BATCH where the generation still has implicit batch (8.x, 9.x), STRONGLY_TYPED
    where asked and the flag exists (9.x/10.x; in 11.x strong typing is always on)."""
    names = ["EXPLICIT_BATCH"] if api.explicit_batch_flag else []
    if strongly_typed and api.generation != "11":
        names.append("STRONGLY_TYPED")
    return tuple(names)


def create_network(trt: Any, builder: Any, names: Sequence[str]) -> Any:
    """``builder.create_network`` with the named flags (``1 << int(flag)``, as NVIDIA's samples)."""
    return builder.create_network(network_flags(trt, names))


def parse_onnx(trt: Any, network: Any, logger: Any, path: Path) -> Any:
    """Parse the ONNX at ``path`` into ``network``; DeviceError quoting every parser error.

    The returned parser need not be kept: ``OnnxParser``'s constructor has ``py::keep_alive<2,1>``,
    so the network keeps it alive (pyOnnx.cpp in 8.5, 8.6, 10.3 and 11.0).
    """
    parser = trt.OnnxParser(network, logger)
    if parser.parse(Path(path).read_bytes(), str(path)):
        return parser
    errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
    raise DeviceError(
        f"TensorRT {getattr(trt, '__version__', '?')} cannot parse {path}: {'; '.join(errors) or 'no parser message'} "
        f"(check it first: `depth-export check {path} --trt-version {getattr(trt, '__version__', 'X')}`)"
    )
