"""Fixtures for the parity suite: a tiny trained checkpoint, its FP32/FP16/INT8 ONNX exports, two
deliberately damaged artifacts, and one ``depth-parity`` run over all of them.

The checkpoint is trained for real (synthetic rooms, 64x96, a few seconds of CPU per 10 steps) so
its activations and outputs look like a trained model's, and kept in pytest's cache folder
(``.pytest_cache/d/edgedepth-parity``): later sessions load it instead of training again.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from edgedepth import __version__

HEIGHT, WIDTH = 64, 96
TRAIN_OVERRIDES = [
    f"data.height={HEIGHT}", f"data.width={WIDTH}", "train.steps=100", "train.batch_size=4", "train.warmup_steps=10",
    "data.synthetic.num_train=64", "data.synthetic.num_val=8", "data.num_workers=0", "train.device=cpu",
    "train.eval_every=100000", "train.image_every=100000", "train.checkpoint_every=100000", "eval.max_samples=8",
]
#: Bump to retrain the cached checkpoint when this fixture's recipe changes.
RECIPE_VERSION = 1


@pytest.fixture(scope="session")
def one_torch_thread():
    """PyTorch on one thread: on a busy 2-core machine its OpenMP threads spin against each other."""
    torch = pytest.importorskip("torch")  # skipped here, not at import: budget and figure tests need no torch
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _recipe_key() -> str:
    text = json.dumps({"overrides": TRAIN_OVERRIDES, "version": RECIPE_VERSION, "edgedepth": __version__})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _loads(path: Path) -> bool:
    from edgedepth.errors import CheckpointError
    from edgedepth.training.checkpoint import load_checkpoint

    try:
        load_checkpoint(path)
    except CheckpointError:
        return False
    return True


def _train(work: Path, synthetic_cache: Path, target: Path) -> None:
    """Train the recipe, then keep only weights, spec and config (no optimizer state) at ``target``."""
    from edgedepth.training.checkpoint import load_checkpoint, save_checkpoint
    from edgedepth.training.config import config_to_dict, load_config
    from edgedepth.training.trainer import Trainer

    overrides = TRAIN_OVERRIDES + [f"data.synthetic.cache_dir={synthetic_cache}", f"train.output_dir={work}"]
    cfg = load_config("demo", overrides)
    trainer = Trainer(cfg)
    trainer.train()
    model, spec = load_checkpoint(work / "checkpoints" / "last.pt")
    save_checkpoint(target, model, spec, config=config_to_dict(cfg))


@pytest.fixture(scope="session")
def tiny_checkpoint(request, tmp_path_factory, one_torch_thread) -> Path:
    """A 64x96 ResNet18 depth checkpoint trained 100 steps on synthetic rooms (cached across sessions)."""
    pytest_cache = getattr(request.config, "cache", None)  # None under `-p no:cacheprovider`: train afresh
    cache = Path(pytest_cache.mkdir("edgedepth-parity") if pytest_cache else tmp_path_factory.mktemp("parity-cache"))
    target = cache / f"tiny-{_recipe_key()}.pt"
    if not (target.is_file() and _loads(target)):
        _train(tmp_path_factory.mktemp("train"), cache / "synthetic", target)
    return target


def render_rooms(folder: Path, count: int, first_seed: int) -> Path:
    """``count`` rendered rooms as PNG files (BGR on disk, as OpenCV writes them)."""
    import cv2

    from edgedepth.training.data.render import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        rgb, _, _ = render_scene(first_seed + index, HEIGHT, WIDTH)
        cv2.imwrite(str(folder / f"room_{index:03d}.png"), rgb[:, :, ::-1])
    return folder


@pytest.fixture(scope="session")
def artifacts(tiny_checkpoint, tmp_path_factory) -> Dict[str, Path]:
    """FP32, FP16 and Q/DQ INT8 ONNX of the checkpoint, made by the project's own export and calib."""
    from edgedepth.calib import CalibrationRequest, calibrate
    from edgedepth.export.fp16 import convert_to_fp16
    from edgedepth.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("artifacts")
    quiet = lambda message: None  # noqa: E731
    export_onnx(tiny_checkpoint, folder / "model.onnx", log=quiet)
    convert_to_fp16(folder / "model.onnx", folder / "model.fp16.onnx", log=quiet)
    images = render_rooms(folder / "calibration", 40, first_seed=5000)
    calibrate(CalibrationRequest(onnx=folder / "model.onnx", output=folder / "model.int8.onnx", data=[str(images)],
                                 num_images=32, num_eval=8, quantizer="ort"), log=quiet)
    return {"fp32": folder / "model.onnx", "fp16": folder / "model.fp16.onnx", "int8": folder / "model.int8.onnx"}


def perturb_weights(source: Path, target: Path, relative_noise: float = 0.02, seed: int = 0) -> Path:
    """Add Gaussian noise (``relative_noise`` x each tensor's std) to every conv weight initializer."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        weights = numpy_helper.to_array(tensor)
        if weights.ndim == 4:
            noisy = weights + rng.normal(0.0, relative_noise * weights.std(), weights.shape)
            tensor.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), tensor.name))
    onnx.save(model, str(target))
    return target


def rewrite_spec(source: Path, target: Path, **changes) -> Path:
    """Copy an ONNX with its metadata spec changed (the graph untouched)."""
    import onnx

    from edgedepth.export import onnx_info

    model = onnx.load(str(source))
    onnx_info.set_spec(model, onnx_info.read_spec(model).replace(**changes))
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="session")
def damaged(artifacts, tmp_path_factory) -> Dict[str, Path]:
    """An FP32 ONNX with perturbed weights and one whose metadata states the wrong normalisation."""
    folder = tmp_path_factory.mktemp("damaged")
    return {
        "perturbed": perturb_weights(artifacts["fp32"], folder / "perturbed.onnx"),
        "wrong_norm": rewrite_spec(artifacts["fp32"], folder / "wrong_norm.onnx",
                                   mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    }


@dataclass
class CliRun:
    """One ``depth-parity`` invocation: exit status, printed lines, and the report it wrote."""

    code: int
    stdout: str
    stderr: str
    report_dir: Path

    @property
    def report(self) -> dict:
        return json.loads((self.report_dir / "report.json").read_text())

    def candidate(self, label: str) -> dict:
        return next(c for c in self.report["candidates"] if c["label"] == label)

    def verdict_line(self, label: str) -> str:
        return next(line for line in self.stdout.splitlines() if f"  {label} [" in line)


def run_cli(args: List[str], report_dir: Path) -> CliRun:
    """Run ``depth-parity`` in-process (one thread) and capture what it prints."""
    from edgedepth.parity.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args + ["--report-dir", str(report_dir), "--threads", "1", "--quiet"])
    return CliRun(code, out.getvalue(), err.getvalue(), report_dir)


@pytest.fixture(scope="session")
def parity_cli():
    """``parity_cli(args, report_dir) -> CliRun``."""
    return run_cli


@pytest.fixture(scope="session")
def room_renderer():
    """``room_renderer(folder, count, first_seed) -> folder`` of rendered-room PNGs."""
    return render_rooms


@pytest.fixture(scope="session")
def spec_rewriter():
    """``spec_rewriter(source, target, **changes) -> target``: an ONNX copy with its spec changed."""
    return rewrite_spec


@pytest.fixture(scope="session")
def full_run(tiny_checkpoint, artifacts, damaged, tmp_path_factory) -> CliRun:
    """``depth-parity`` on the built-in set with every good and damaged candidate at once."""
    candidates = [artifacts["fp32"], artifacts["fp16"], artifacts["int8"], damaged["perturbed"], damaged["wrong_norm"]]
    args = ["--checkpoint", str(tiny_checkpoint), "--candidates", *map(str, candidates)]
    return run_cli(args, tmp_path_factory.mktemp("report"))
