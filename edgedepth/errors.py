"""Error types. Library code raises these; only the CLIs turn them into exit codes.

Every message should say what was received, what was expected and how to fix it, on one line.
"""


class EdgeDepthError(Exception):
    """Base class of every error edgedepth raises on purpose (bad input, bad artifact)."""


class UsageError(EdgeDepthError):
    """The command line, or a file it names, asks for something impossible: fix the command.

    The CLIs exit 2 for these (as argparse does), 1 for every other EdgeDepthError.
    """


class ConfigError(UsageError, ValueError):
    """A configuration key or value is unknown or out of range (a training config, a budget file)."""


class SpecError(EdgeDepthError, ValueError):
    """A ModelSpec is missing, malformed or inconsistent (e.g. size not a multiple of 32)."""


class CheckpointError(EdgeDepthError):
    """A checkpoint is missing, truncated, or from another architecture."""


class DataError(EdgeDepthError):
    """A dataset file is missing or corrupt, or a data source yields nothing."""


class ExportError(EdgeDepthError):
    """Export to ONNX or TensorRT failed, or its self-check did not pass."""


class BackendError(EdgeDepthError):
    """An inference backend is unavailable or cannot run the given artifact."""


class SourceError(EdgeDepthError):
    """A capture source (camera, stream, file) cannot be opened or read."""


class DeviceError(EdgeDepthError):
    """TensorRT or the CUDA bindings are missing, the GPU refused a call, or an engine was built for
    another TensorRT, GPU or platform (edgedepth.trt)."""
