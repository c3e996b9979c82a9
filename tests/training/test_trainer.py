"""The trainer: run folder, per-term TensorBoard logging, resume after SIGKILL, non-finite losses, DDP."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.errors import CheckpointError
from edgedepth.training.checkpoint import read_checkpoint
from edgedepth.training.cli import eval_main, train_main
from edgedepth.training.config import load_config
from edgedepth.training.data import normalize_torch
from edgedepth.training.trainer import (
    Trainer,
    TrainingError,
    cpu_has_native_bf16,
    make_optimizer,
    make_scheduler,
    select_amp_dtype,
)

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(tmp_path: Path, cache: Path, **extra) -> list:
    """A run small enough for a CPU test: 64x96 synthetic scenes, batch 2, no workers."""
    values = {
        "data.height": 64,
        "data.width": 96,
        "data.num_workers": 0,
        "data.synthetic.num_train": 12,
        "data.synthetic.num_val": 4,
        "data.synthetic.cache_dir": str(cache),
        "train.batch_size": 2,
        "train.steps": 4,
        "train.warmup_steps": 1,
        "train.log_every": 1,
        "train.image_every": 2,
        "train.eval_every": 100,
        "train.checkpoint_every": 2,
        "train.output_dir": str(tmp_path / "run"),
        "model.decoder_channels": "[64,32,32,16,16]",
        "eval.batch_size": 2,
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic-cache")


def tensorboard_tags(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events.Tags()


def test_short_run_writes_run_folder_and_logs_every_loss_term(tmp_path, cache_dir):
    cfg = load_config("grad_a", tiny_overrides(tmp_path, cache_dir, **{"loss.gradient_scales": "[1,2,4]"}))
    trainer = Trainer(cfg)
    metrics = trainer.train()
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    assert load_config(run / "config.yaml").loss.gradient_weight == 0.2
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(run / "checkpoints" / name, weights_only=True)
        assert ckpt["train_state"]["step"] == 4
    tags = tensorboard_tags(run)
    expected = {"loss/ssi", "loss/silog", "loss/grad", "loss/grad/s1", "loss/grad/s2", "loss/grad/s4", "loss/total",
                "train/lr", "train/grad_norm", "val/abs_rel", "val/d1", "val/edge_abs_rel"}
    assert expected <= set(tags["scalars"])
    assert tags["images"], "the RGB | GT | prediction | error grid is logged"
    assert 0.0 <= metrics["d1"] <= 1.0 and metrics["num_valid"] > 0


def test_zero_weight_terms_are_not_logged(tmp_path, cache_dir):
    cfg = load_config("baseline", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 2}))
    Trainer(cfg).train()
    scalars = set(tensorboard_tags(tmp_path / "run")["scalars"])
    assert {"loss/ssi", "loss/silog", "loss/total"} <= scalars
    assert not any(tag.startswith("loss/grad") for tag in scalars)


def lr_curve(warmup: int, total: int) -> list:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = make_scheduler(optimizer, warmup, total)
    curve = []
    for _ in range(total + 1):
        curve.append(optimizer.param_groups[0]["lr"] / 2.0)
        optimizer.step()
        scheduler.step()
    return curve


def test_warmup_then_cosine_schedule():
    curve = lr_curve(10, 100)
    assert curve[0] == pytest.approx(0.1) and curve[4] == pytest.approx(0.5)  # linear warm-up from lr / warmup
    assert curve[9] == pytest.approx(1.0) and curve[10] == pytest.approx(1.0)  # the peak, then the cosine starts
    assert curve[55] == pytest.approx(0.5) and curve[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(curve[10:], curve[11:])), "the cosine part only decreases"
    assert lr_curve(0, 10)[0] == pytest.approx(1.0) and lr_curve(0, 10)[10] == pytest.approx(0.0, abs=1e-12)


def test_cpu_mixed_precision_is_bf16_only_where_the_cpu_has_it():
    cpu = torch.device("cpu")
    assert select_amp_dtype("none", cpu) is None
    assert select_amp_dtype("bf16", cpu) is torch.bfloat16  # asked for: honoured, even if emulated
    assert select_amp_dtype("auto", cpu) is (torch.bfloat16 if cpu_has_native_bf16() else None)
    with pytest.raises(TrainingError, match="train.amp=fp16 needs a CUDA device"):
        select_amp_dtype("fp16", cpu)
    assert select_amp_dtype("auto", torch.device("meta")) is None
    with pytest.raises(TrainingError, match="train.amp=bf16 is supported on CUDA and CPU, not meta"):
        select_amp_dtype("bf16", torch.device("meta"))


def test_bf16_training_step_keeps_fp32_weights_and_finite_loss(tmp_path, cache_dir):
    cfg = load_config("base", tiny_overrides(tmp_path, cache_dir, **{"train.amp": "bf16", "train.steps": 2}))
    trainer = Trainer(cfg)
    assert trainer.amp_dtype is torch.bfloat16
    terms, grad_norm = trainer.train_step(next(trainer.batches())[0])
    assert terms is not None and all(torch.isfinite(torch.tensor(v)) for v in terms.values())
    assert grad_norm > 0
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_precise_bn_sets_statistics_from_the_final_weights_and_leaves_weights_alone(tmp_path, cache_dir):
    trainer = Trainer(load_config("base", tiny_overrides(tmp_path, cache_dir, **{"train.amp": "none"})))
    batch = next(trainer.batches())[0]
    norms = [m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items() if "running" not in k and "batches" not in k}

    trainer.recompute_bn_statistics(3, iter([(batch, 0.0)] * 3))
    precise = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    assert all(m.momentum == 0.1 for m in norms), "the training momentum must be restored"
    after = trainer.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights.items())

    # Reference: one pass with momentum 1 makes the running statistics that batch's statistics,
    # which is what averaging three identical batches must give.
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = 1.0
    trainer.model.train()
    with torch.no_grad():
        image = normalize_torch(batch["image"], trainer.spec).contiguous(memory_format=torch.channels_last)
        trainer.model(image)
    for norm, (mean, var) in zip(norms, precise):
        torch.testing.assert_close(mean, norm.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(var, norm.running_var, rtol=1e-4, atol=1e-5)


def test_fused_adamw_takes_the_same_step_as_the_per_tensor_one():
    torch.manual_seed(0)
    models = [torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)]
    models[1].load_state_dict(models[0].state_dict())
    fused = make_optimizer(models[0], 1e-2, 1e-4, torch.device("cpu"))
    plain = torch.optim.AdamW(models[1].parameters(), lr=1e-2, weight_decay=1e-4)
    assert fused.defaults.get("fused") is True
    x = torch.randn(16, 8)
    for model, optimizer in zip(models, (fused, plain)):
        for _ in range(3):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_nonfinite_losses_skip_steps_then_abort(tmp_path, cache_dir, monkeypatch):
    cfg = load_config("baseline", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 10, "train.max_nonfinite": 3}))
    trainer = Trainer(cfg)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    real_loss = trainer.loss_fn.forward

    def nan_loss(pred, target, mask):
        total, terms = real_loss(pred, target, mask)
        return total * float("nan"), terms

    monkeypatch.setattr(trainer.loss_fn, "forward", nan_loss)
    with pytest.raises(TrainingError, match="non-finite for 3 steps in a row"):
        trainer.train()
    assert trainer.state.nonfinite_total == 3
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())), "skipped steps change no weight"


def test_sigkill_then_resume_continues_from_last_checkpoint(tmp_path, cache_dir):
    overrides = tiny_overrides(
        tmp_path, cache_dir, **{"train.steps": 400, "train.checkpoint_every": 3, "train.image_every": 1000}
    )
    cmd = [sys.executable, "-m", "edgedepth.training.cli", "--config", "baseline", *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    steps_seen = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(steps_seen) < 3:
            if last.exists():
                # Whatever moment we look, the file on disk is a whole checkpoint.
                steps_seen.append(read_checkpoint(last)["train_state"]["step"])
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert steps_seen, "a checkpoint appeared before the kill"
    killed_at = read_checkpoint(last)["train_state"]["step"]  # whole, even if the kill hit a write
    assert killed_at % 3 == 0 and 0 < killed_at < 400
    resumed = [f"train.output_dir={tmp_path / 'run'}", f"train.steps={killed_at + 2}"]
    cfg = load_config(tmp_path / "run" / "config.yaml", resumed)
    trainer = Trainer(cfg, resume=True)
    assert trainer.state.step == killed_at
    assert trainer.scheduler.last_epoch == killed_at, "the LR schedule goes on where it stopped"
    trainer.train()
    assert read_checkpoint(last)["train_state"]["step"] == killed_at + 2
    assert not list(last.parent.glob(".*.tmp")), "a half-written temp file from the kill is cleaned up"


def test_resume_cli_without_run_folder_is_one_line_error(tmp_path, capsys):
    assert train_main(["--resume", str(tmp_path / "nothing")]) == 2  # the command names a wrong folder: usage
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("depth-train: error:") and "no config.yaml" in err[0]


def test_eval_cli_writes_all_metrics(tmp_path, cache_dir):
    cfg = load_config("grad_c", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 2}))
    Trainer(cfg).train()
    out = tmp_path / "metrics.json"
    assert eval_main(["--checkpoint", str(tmp_path / "run/checkpoints/best.pt"), "--output", str(out)]) == 0
    import json

    result = json.loads(out.read_text())
    for key in ("abs_rel", "rmse", "mae", "d1", "d2", "d3", "edge_abs_rel", "boundary_f1"):
        assert key in result["metrics"]
    assert result["num_samples"] == 4 and result["dataset"] == "synthetic"


def test_eval_cli_truncated_checkpoint_is_one_line_error(tmp_path, cache_dir, capsys):
    cfg = load_config("grad_c", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 2}))
    Trainer(cfg).train()
    path = tmp_path / "run/checkpoints/last.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert eval_main(["--checkpoint", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


DDP_WORKER = textwrap.dedent(
    """
    import sys, torch
    from edgedepth.training.config import load_config
    from edgedepth.training.trainer import Trainer
    cfg = load_config("grad_a", sys.argv[2:])
    trainer = Trainer(cfg)
    trainer.train()
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    torch.save(weights, f"{sys.argv[1]}/rank{trainer.dist.rank}.pt")
    trainer.close()
    """
)


@pytest.mark.slow
def test_two_process_gloo_ranks_keep_identical_weights(tmp_path, cache_dir):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    overrides = tiny_overrides(tmp_path, cache_dir, **{"train.steps": 3, "train.device": "cpu"})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(worker), str(tmp_path), *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    saved = read_checkpoint(tmp_path / "run/checkpoints/last.pt")["model"]
    # BatchNorm running statistics are per-rank between DDP's buffer broadcasts; weights are not.
    weights = [k for k in rank0 if "running_" not in k and "num_batches" not in k]
    assert rank0.keys() == rank1.keys() and len(weights) > 100
    assert all(torch.equal(rank0[k], rank1[k]) for k in weights)
    assert all(torch.equal(rank0[k], saved[k]) for k in rank0), "rank 0 wrote the checkpoint"
