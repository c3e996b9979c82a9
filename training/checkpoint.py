"""Self-describing checkpoints: weights + ModelSpec + resolved config + resumable state.

A checkpoint is a dict saved with ``torch.save`` that holds only tensors and plain containers,
so ``torch.load(path, weights_only=True)`` (the safe loader, and torch's default since 2.6)
reads it, and written atomically, so a run killed while saving leaves the previous file intact::

    {"format": "edgedepth-checkpoint", "format_version": 1, "model": state_dict,
     "spec": ModelSpec.to_dict(), "config": {...}, **state  # optimizer, scheduler, step, rng, ...}
"""
from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

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
        torch.save(payload, tmp)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def read_checkpoint(path: PathLike, map_location: MapLocation = "cpu") -> Dict[str, Any]:
    """The raw checkpoint dict, read with ``weights_only=True``; CheckpointError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass the .pt file depth-train wrote (runs/<name>/...)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, refused global: all mean "unusable file"
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {_first_line(exc)}): it is truncated, "
            "corrupt or not a weights-only torch file; use an intact copy (e.g. the previous checkpoint)"
        ) from exc
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
    data = read_checkpoint(path, map_location)
    try:
        spec = ModelSpec.from_dict(data["spec"])
        model = create_model(spec, pretrained="none")
    except EdgeDepthError as exc:
        raise CheckpointError(f"checkpoint {path} has an unusable spec: {exc}") from exc
    _load_weights(model, data["model"], spec, path)
    if map_location is not None:
        model.to(map_location)
    return model.eval(), spec


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
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))
