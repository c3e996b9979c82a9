"""Self-describing checkpoints: weights + ModelSpec + resolved config + resumable state.

A checkpoint is a dict saved with ``torch.save`` that holds only tensors and plain containers,
so ``torch.load(path, weights_only=True)`` (the safe loader, and torch's default since 2.6)
reads it, and written atomically, so a run killed while saving leaves the previous file intact::

    {"format": "edgedepth-checkpoint", "format_version": 1, "model": state_dict,
     "spec": ModelSpec.to_dict(), "config": {...}, **state  # optimizer, scheduler, step, rng, ...}
"""
from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, Union

import numpy as np
import torch
from torch import nn

from edgedepth.errors import CheckpointError, EdgeDepthError
from edgedepth.io import PathLike, atomic_path
from edgedepth.spec import ModelSpec
from edgedepth.training.model import DepthNet, create_model
from edgedepth.training.model.resnet import infer_resnet_name
from edgedepth.training.model.state_dict import state_dict_mismatch

MapLocation = Union[str, torch.device, None]

CHECKPOINT_FORMAT = "edgedepth-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
RESERVED_KEYS = ("format", "format_version", "model", "spec", "config")
#: Leaf types ``torch.load(weights_only=True)`` accepts (its allow-list, restricted to what we need).
_SAFE_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.Size, torch.dtype, torch.device)
_SAFE_CONTAINERS = (dict, OrderedDict, list, tuple, set)


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DataParallel/DDP (``.module``) or torch.compile (``._orig_mod``)."""
    for attribute in ("module", "_orig_mod"):
        inner = getattr(model, attribute, None)
        if isinstance(inner, nn.Module):
            return _unwrap(inner)
    return model


def check_weights_only_safe(obj: Any, where: str = "checkpoint") -> None:
    """Raise CheckpointError naming the first value ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, _SAFE_LEAVES):
        return
    if not isinstance(obj, _SAFE_CONTAINERS):
        raise CheckpointError(
            f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which torch.load(weights_only=True) "
            "refuses; store tensors, numbers, strings or lists/dicts of them (e.g. .tolist(), .state_dict())"
        )
    if isinstance(obj, dict):
        for key, value in obj.items():
            check_weights_only_safe(key, f"{where} key {key!r}")
            check_weights_only_safe(value, f"{where}[{key!r}]")
    else:
        for index, value in enumerate(obj):
            check_weights_only_safe(value, f"{where}[{index}]")


def save_checkpoint(
    path: PathLike, model: nn.Module, spec: ModelSpec, config: Optional[Dict[str, Any]] = None, **state: Any
) -> None:
    """Write ``model``'s weights, ``spec``, ``config`` and ``state`` to ``path`` atomically.

    ``state`` holds whatever resuming needs (``optimizer=opt.state_dict()``, ``step=...``,
    ``rng=rng_state()``); every value must be weights_only-safe, else CheckpointError says which.
    """
    clash = sorted(set(state) & set(RESERVED_KEYS))
    if clash:
        raise CheckpointError(f"extra checkpoint state may not use the reserved keys {clash}; rename them")
    model = _unwrap(model)
    model_spec = getattr(model, "spec", None)
    if isinstance(model_spec, ModelSpec) and model_spec.architecture != spec.architecture:
        raise CheckpointError(
            f"refusing to save a {model_spec.architecture} model under a spec that says {spec.architecture}; "
            "pass the spec the model was built from (model.spec)"
        )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": model.state_dict(),
        "spec": spec.to_dict(),
        "config": dict(config or {}),
        **state,
    }
    check_weights_only_safe(payload)
    with atomic_path(path) as tmp:
        _torch_save(payload, tmp, Path(path))


def _torch_save(payload: Dict[str, Any], tmp: Path, path: Path) -> None:
    """``torch.save`` into ``tmp``; a failed write raises the OSError (errno) naming ``path``, an
    interrupt (Ctrl-C, SIGTERM) the KeyboardInterrupt.

    torch writes a path through its own C++ stream, which reports a full disk as
    ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``; through a Python file
    the OSError itself is raised, chained under that RuntimeError. An interrupt in the middle of a
    record is chained the same way, under the RuntimeError of closing the half-written archive.
    """
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
    except (OSError, RuntimeError) as exc:
        interrupt = _in_chain(exc, KeyboardInterrupt)
        if interrupt is not None:
            raise interrupt from None
        cause = _in_chain(exc, OSError)
        if cause is None or cause.errno is None:
            raise
        raise OSError(cause.errno, cause.strerror or os.strerror(cause.errno), str(path)) from exc


ChainedError = TypeVar("ChainedError", bound=BaseException)


def _in_chain(exc: BaseException, kind: Type[ChainedError]) -> Optional[ChainedError]:
    """The first exception of type ``kind`` in ``exc``'s chain (itself, its cause or its context)."""
    seen: List[BaseException] = []
    current: Optional[BaseException] = exc
    while current is not None and not any(current is other for other in seen):
        if isinstance(current, kind):
            return current
        seen.append(current)
        current = current.__cause__ or current.__context__
    return None


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: What torch's weights-only refusal names, and how to say it.
_REFUSED = ((re.compile(r"GLOBAL ([\w.]+)"), "a reference to {}"),
            (re.compile(r"Unsupported operand (\d+)"), "pickle opcode {} (not written by torch.save)"),
            (re.compile(r"WeightsUnpickler error: *([^\n]+)"), "{}"))


def _first_line(exc: BaseException) -> str:
    lines = _ANSI_ESCAPE.sub("", str(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _refused_what(exc: BaseException) -> Optional[str]:
    """What torch's weights-only unpickler refused (``a reference to posix.system``), None for other failures."""
    text = _ANSI_ESCAPE.sub("", str(exc))
    if not isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" not in text:
        return None
    for pattern, phrase in _REFUSED:
        found = pattern.search(text)
        if found:
            return phrase.format(found.group(1).strip())
    return "an object that is not a tensor or a plain value"


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    refused = _refused_what(exc)
    if refused is not None:
        # Never advise weights_only=False, as torch's message does: for a file like this it runs the code inside.
        return CheckpointError(
            f"checkpoint {path} refused: it holds {refused}, which a checkpoint of tensors and plain values never "
            "holds, and unpickling it could run code; edgedepth loads checkpoints with weights_only=True only: "
            "use a .pt file depth-train wrote, from a source you trust"
        )
    return CheckpointError(
        f"checkpoint {path} cannot be read ({type(exc).__name__}: {_first_line(exc)}): it is truncated, "
        "corrupt or not a weights-only torch file; use an intact copy (e.g. the previous checkpoint)"
    )


def _missing(path: Path) -> CheckpointError:
    if path.is_dir():
        inside = next((p for p in (path / "checkpoints" / "best.pt", path / "best.pt") if p.is_file()), None)
        hint = f"pass {inside}" if inside else "pass the .pt file inside it that depth-train wrote"
        return CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file; {hint}")
    return CheckpointError(f"checkpoint {path} not found; pass the .pt file depth-train wrote (runs/<name>/...)")


def read_checkpoint(path: PathLike, map_location: MapLocation = "cpu") -> Dict[str, Any]:
    """The raw checkpoint dict, read with ``weights_only=True``; CheckpointError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    try:
        with warnings.catch_warnings():
            # A plain pickle (not torch.save) makes torch warn about its protocol; the refusal says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, refused global: all mean "unusable file"
        raise _unreadable(path, exc) from exc
    _check_format(data, path)
    return data


def _check_format(data: Any, path: Path) -> None:
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = sorted(map(str, data))[:6] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path} is not an edgedepth checkpoint (found {found}, expected 'format': {CHECKPOINT_FORMAT!r}); "
            "a bare torchvision state dict goes to model.pretrained=<path> instead"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {version!r}; this edgedepth reads up to "
            f"{CHECKPOINT_FORMAT_VERSION}: upgrade edgedepth"
        )
    missing = [key for key in ("model", "spec") if key not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it was not written by save_checkpoint")


def load_checkpoint(path: PathLike, map_location: MapLocation = "cpu") -> Tuple[DepthNet, ModelSpec]:
    """Rebuild the model a checkpoint describes and load its weights strictly; model in eval mode."""
    model, spec, _ = load_checkpoint_data(path, map_location)
    return model, spec


def load_checkpoint_data(
    path: PathLike, map_location: MapLocation = "cpu"
) -> Tuple[DepthNet, ModelSpec, Dict[str, Any]]:
    """:func:`load_checkpoint` plus the checkpoint dict it read (config, state), from one read of the file."""
    data = read_checkpoint(path, map_location)
    try:
        spec = ModelSpec.from_dict(data["spec"])
        model = create_model(spec, pretrained="none")
    except EdgeDepthError as exc:
        raise CheckpointError(f"checkpoint {path} has an unusable spec: {exc}") from exc
    _load_weights(model, data["model"], spec, path)
    if map_location is not None:
        model.to(map_location)
    return model.eval(), spec, data


def _load_weights(model: DepthNet, state_dict: Mapping[str, torch.Tensor], spec: ModelSpec, path: PathLike) -> None:
    mismatch = state_dict_mismatch(model.state_dict(), state_dict)
    if mismatch:
        holds = infer_resnet_name(state_dict, prefix="encoder.")
        raise CheckpointError(
            f"checkpoint {path} holds weights for {holds} but its spec says {spec.architecture} with "
            f"arch_options {spec.arch_options}: {mismatch}; the spec and weights come from different models"
        )
    model.load_state_dict(state_dict, strict=True)


def rng_state() -> Dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and ``random`` generator states, weights_only-safe."""
    bit_generator, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": str(bit_generator),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # uint32 -> int64, lossless
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "state": list(python_state), "gauss_next": gauss_next},
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only for devices that exist now)."""
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available() and state["cuda"]:
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device)
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["bit_generator"],
            # .cpu(): read with map_location="cuda" (or any device) the keys are not on the CPU.
            numpy_state["keys"].cpu().numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))
