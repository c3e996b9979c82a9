"""The trainer: run folder, per-term TensorBoard logging, resume after SIGKILL, non-finite losses, DDP."""
from __future__ import annotations

import json
import math
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
from edgedepth.training.checkpoint import read_checkpoint, rng_state
from edgedepth.training.cli import eval_main, train_main
from edgedepth.training.config import load_config
from edgedepth.training.data import normalize_torch
from edgedepth.training.trainer import (
    Trainer,
    TrainingError,
    cpu_has_native_bf16,
    make_optimizer,
    make_scheduler,
    parameter_groups,
    resume_scheduler,
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
    # The augmented training batch under train/, a validation batch under val/ (it was mislabelled val/).
    assert {"train/rgb_gt_pred_error", "val/rgb_gt_pred_error"} <= set(tags["images"])
    # Every ground-truth pixel of the 4 validation rooms inside (min_depth, max_depth), at their own size.
    from edgedepth.training.data import build_raw_dataset

    rooms = [sample["depth"] for sample in build_raw_dataset(cfg.data, "val")]
    assert metrics["num_valid"] == sum(int(((d > 0.1) & (d < 10.0)).sum()) for d in rooms) > 0.9 * 4 * 64 * 96
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 4 and summary["metrics"]["abs_rel"] == pytest.approx(metrics["abs_rel"])


def test_loss_shares_are_logged_as_loss_share_tags_and_averaged_into_the_summary(tmp_path, cache_dir):
    cfg = load_config("grad_a", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 3}))
    metrics = Trainer(cfg).train()
    scalars = set(tensorboard_tags(tmp_path / "run")["scalars"])
    assert {"loss_share/ssi", "loss_share/silog", "loss_share/grad"} <= scalars
    assert not any(tag.startswith("loss/share") for tag in scalars)
    shares = metrics["loss_shares"]
    assert set(shares) == {"ssi", "silog", "grad"} and sum(shares.values()) == pytest.approx(1.0, abs=1e-4)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["metrics"]["loss_shares"] == shares


def test_a_loss_without_share_terms_gives_no_loss_shares(tmp_path, cache_dir, monkeypatch):
    cfg = load_config("baseline", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 2}))
    trainer = Trainer(cfg)
    real_loss = trainer.loss_fn.forward

    def without_shares(pred, target, mask):
        total, terms = real_loss(pred, target, mask)
        return total, {key: value for key, value in terms.items() if not key.startswith("share/")}

    monkeypatch.setattr(trainer.loss_fn, "forward", without_shares)
    assert trainer.train()["loss_shares"] == {}
    assert not any(tag.startswith("loss_share/") for tag in tensorboard_tags(tmp_path / "run")["scalars"])


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


def test_cpu_mixed_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    import edgedepth.training.trainer as trainer_module

    cpu = torch.device("cpu")
    assert select_amp_dtype("none", cpu) is None
    assert select_amp_dtype("bf16", cpu) is torch.bfloat16  # asked for: honoured, even if emulated
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: True)
    assert select_amp_dtype("auto", cpu) is torch.bfloat16
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    assert select_amp_dtype("auto", cpu) is None
    assert isinstance(cpu_has_native_bf16(), bool)
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


def test_precise_bn_of_a_resumed_run_averages_the_batches_it_asks_for(tmp_path, cache_dir):
    # 12 rooms, batch 2: 6 batches an epoch. Resumed at step 4 and ended at 6, the run has used up
    # its epoch; precise BN must still average 6 batches (BatchNorm counts them), not the 2 left.
    overrides = {"train.steps": 4, "train.checkpoint_every": 4, "train.precise_bn_batches": 6, "train.amp": "none"}
    run_steps(load_config("base", tiny_overrides(tmp_path, cache_dir, **overrides)))
    cfg = load_config(tmp_path / "run" / "config.yaml", [f"train.output_dir={tmp_path / 'run'}", "train.steps=6"])
    trainer = Trainer(cfg, resume=True)
    trainer.train()
    assert int(trainer.model.encoder.bn1.num_batches_tracked) == 6
    trainer.close()


def test_a_resumed_run_keeps_every_logged_step_once(tmp_path, cache_dir):
    """Stopped at its step-2 checkpoint and resumed to 4: TensorBoard holds the loss of steps 1-4,
    each once (a purge from the checkpoint step itself lost step 2's events)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_steps(load_config("base", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 2, "train.amp": "none"})))
    cfg = load_config(tmp_path / "run" / "config.yaml", [f"train.output_dir={tmp_path / 'run'}", "train.steps=4"])
    trainer = Trainer(cfg, resume=True)
    trainer.train()
    trainer.close()
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert [event.step for event in events.Scalars("loss/total")] == [1, 2, 3, 4]


@pytest.mark.parametrize("emulated_only, expected", [(True, torch.float16), (False, torch.bfloat16)])
def test_auto_amp_on_a_gpu_without_native_bf16_is_fp16(monkeypatch, emulated_only, expected):
    # A T4 / V100: torch reports bf16 "supported" only when emulation counts.
    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return including_emulation or not emulated_only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert select_amp_dtype("auto", torch.device("cuda", 0)) is expected


def test_no_weight_decay_on_norms_biases_and_rezero_alphas():
    from edgedepth.spec import ModelSpec
    from edgedepth.training.model import create_model

    model = create_model(ModelSpec(height=32, width=32, arch_options={"rezero": True}), pretrained="none")
    names = {id(p): name for name, p in model.named_parameters()}
    decay, no_decay = ({names[id(p)] for p in group["params"]} for group in parameter_groups(model, 0.1))
    assert any(name.endswith("alpha") for name in no_decay), "ReZero gates are not decayed"
    assert "encoder.bn1.weight" in no_decay and "encoder.bn1.bias" in no_decay and "head.conv.bias" in no_decay
    assert "encoder.conv1.weight" in decay and "head.conv.weight" in decay
    assert decay.isdisjoint(no_decay) and len(decay | no_decay) == len(names)
    optimizer = make_optimizer(model, 1e-2, 0.1, torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # zero gradients: only the decay moves a parameter
    after = dict(model.named_parameters())
    assert torch.equal(after["encoder.bn1.weight"], before["encoder.bn1.weight"])
    assert not torch.equal(after["encoder.conv1.weight"], before["encoder.conv1.weight"])


def test_a_one_group_optimizer_state_of_an_older_checkpoint_resumes_into_the_two_groups():
    from edgedepth.spec import ModelSpec
    from edgedepth.training.model import create_model
    from edgedepth.training.trainer import upgrade_optimizer_state

    torch.manual_seed(0)
    model = create_model(ModelSpec(height=32, width=32), pretrained="none")
    old = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)  # what depth-train used to build
    model(torch.randn(2, 3, 32, 32)).mean().backward()
    old.step()
    new = make_optimizer(model, 1e-3, 1e-4, torch.device("cpu"))
    new.load_state_dict(upgrade_optimizer_state(old.state_dict(), model, 1e-4))
    assert [g["weight_decay"] for g in new.param_groups] == [1e-4, 0.0]
    for parameter in model.parameters():  # every parameter keeps its own moments
        assert torch.equal(new.state[parameter]["exp_avg"], old.state[parameter]["exp_avg"])
        assert torch.equal(new.state[parameter]["exp_avg_sq"], old.state[parameter]["exp_avg_sq"])


def sgd_run(make, steps: int):
    """An SGD optimizer on one parameter (lr 1) and the scheduler ``make`` builds, after ``steps`` steps."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make(optimizer)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer, scheduler


@pytest.mark.parametrize("writer", ["SequentialLR", "LambdaLR (before SequentialLR)"])
def test_a_resumed_schedule_continues_the_uninterrupted_one(writer):
    import math

    def old_curve(step):
        return min(1.0, (step + 1) / 10) if step < 10 else 0.5 * (1 + math.cos(math.pi * (step - 10) / 90))

    def make_old(optimizer):
        return (make_scheduler(optimizer, 10, 100) if writer == "SequentialLR"
                else torch.optim.lr_scheduler.LambdaLR(optimizer, old_curve))

    saved_optimizer, saved = sgd_run(make_old, 37)
    reference, reference_scheduler = sgd_run(lambda o: make_scheduler(o, 10, 100), 37)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    optimizer.load_state_dict(saved_optimizer.state_dict())  # its LR is step 37's, as in a checkpoint
    scheduler = resume_scheduler(optimizer, 10, 100, 1.0, saved.state_dict()["last_epoch"])
    for _ in range(30):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        for opt, sched in ((optimizer, scheduler), (reference, reference_scheduler)):
            opt.step()
            sched.step()


def test_a_run_resumed_with_more_steps_follows_the_longer_cosine():
    optimizer, _ = sgd_run(lambda o: make_scheduler(o, 0, 10), 8)
    scheduler = resume_scheduler(optimizer, 0, 20, 1.0, 8)  # train.steps raised from 10 to 20
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 20)))
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_the_depth_head_runs_in_fp32_under_bf16_autocast():
    from edgedepth.training.model.decoder import DepthHead

    torch.manual_seed(0)
    head = DepthHead(8, max_depth=80.0)
    features = torch.randn(2, 8, 6, 6).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(features)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, head(features.float()), rtol=0, atol=0)  # bf16 would be ~0.4% off (30 cm)


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
    saved = read_checkpoint(last)["optimizer"]["state"]
    restored = trainer.optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys() and all(
        torch.equal(saved[k]["exp_avg"], restored[k]["exp_avg"]) for k in saved), "Adam's moments are restored"
    trainer.train()
    assert read_checkpoint(last)["train_state"]["step"] == killed_at + 2
    assert not list(last.parent.glob(".*.tmp")), "a half-written temp file from the kill is cleaned up"


def recorded_steps(trainer: Trainer) -> list:
    """Wrap ``trainer.train_step`` to record, per step, the sample names and a checksum of the
    augmented images it trained on."""
    seen = []
    step = trainer.train_step

    def recording(batch):
        seen.append((list(batch["name"]), float(batch["image"].double().sum()), float(batch["depth"].double().sum())))
        return step(batch)

    trainer.train_step = recording
    return seen


def run_steps(cfg, resume: bool = False) -> list:
    trainer = Trainer(cfg, resume=resume)
    seen = recorded_steps(trainer)
    try:
        trainer.train()
    finally:
        trainer.close()
    return seen


def test_a_resumed_run_sees_the_data_and_augmentation_the_uninterrupted_run_saw(tmp_path, cache_dir):
    # 12 rooms, batch 2: 6 steps an epoch; the run stops mid-epoch 1 and resumes there.
    common = {"train.steps": 9, "train.checkpoint_every": 8, "train.precise_bn_batches": 0, "train.amp": "none",
              "data.augment.scale_max": 1.5, "train.image_every": 1000}
    uninterrupted = run_steps(load_config("base", tiny_overrides(tmp_path / "a", cache_dir, **common)))
    stopped = dict(common, **{"train.steps": 8})
    run_b = tmp_path / "b" / "run"
    run_steps(load_config("base", tiny_overrides(tmp_path / "b", cache_dir, **stopped)))
    assert read_checkpoint(run_b / "checkpoints" / "last.pt")["train_state"]["epoch_batches"] == 2
    # Resumed with a DataLoader worker: the augmentation does not depend on which process draws it.
    resumed_cfg = load_config(run_b / "config.yaml", [f"train.output_dir={run_b}", "train.steps=9",
                                                       "data.num_workers=1"])
    resumed = run_steps(resumed_cfg, resume=True)
    assert resumed == uninterrupted[8:9]
    epoch0, epoch1 = ({n for names, _, _ in uninterrupted[a:b] for n in names} for a, b in ((0, 6), (6, 9)))
    assert len(epoch0) == 12, "an epoch sees every room once"
    assert [names for names, _, _ in uninterrupted[6:9]] != [names for names, _, _ in uninterrupted[0:3]], \
        "each epoch has its own order"


def test_resume_on_a_non_cpu_device_reads_the_checkpoint_onto_the_cpu(tmp_path, cache_dir):
    cfg = load_config("baseline", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 2, "train.amp": "none"}))
    run_steps(cfg)
    saved = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    trainer = Trainer(cfg)
    # What a CUDA run meets: the trainer's device is not the CPU. Read onto it, the RNG state
    # (numpy keys, torch state) could not be restored; "meta" stands in for cuda on this machine.
    trainer.device = torch.device("meta")
    torch.manual_seed(123)
    trainer._load_resume_state()
    assert trainer.state.step == 2
    assert torch.equal(torch.get_rng_state(), saved["rng"]["torch"])
    assert torch.equal(rng_state()["numpy"]["keys"], saved["rng"]["numpy"]["keys"])
    trainer.close()


def test_resume_with_a_config_of_another_network_is_a_checkpoint_error(tmp_path, cache_dir):
    cfg = load_config("baseline", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 2, "train.amp": "none"}))
    run_steps(cfg)
    other = load_config(tmp_path / "run" / "config.yaml", ["model.decoder_channels=[64,32,32,16,8]"])
    with pytest.raises(CheckpointError, match=r"does not fit the network.*mis-shaped keys"):
        Trainer(other, resume=True)


def test_sync_bn_converts_batchnorm_under_ddp_on_cuda_only(tmp_path, cache_dir):
    from edgedepth.training.trainer import DistInfo

    cfg = load_config("base", tiny_overrides(tmp_path, cache_dir, **{"train.sync_bn": "true"}))
    trainer = Trainer.__new__(Trainer)  # only what _sync_batchnorm reads: a 2-rank job
    trainer.cfg, trainer.dist = cfg, DistInfo(rank=0, local_rank=0, world_size=2)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    trainer.device = torch.device("cpu")
    with pytest.raises(TrainingError, match="train.sync_bn=true needs CUDA"):
        trainer._sync_batchnorm(model)
    trainer.device = torch.device("cuda", 0)
    weight = model[1].weight
    converted = trainer._sync_batchnorm(model)
    assert isinstance(converted[1], torch.nn.SyncBatchNorm) and converted[1].weight is weight
    trainer.dist = DistInfo()  # one process: nothing to synchronise
    assert not isinstance(trainer._sync_batchnorm(torch.nn.BatchNorm2d(2)), torch.nn.SyncBatchNorm)


def test_resume_cli_without_run_folder_is_one_line_error(tmp_path, capsys):
    assert train_main(["--resume", str(tmp_path / "nothing")]) == 2  # the command names a wrong folder: usage
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("depth-train: error:") and "no config.yaml" in err[0]


def test_eval_cli_gives_the_trainers_final_validation_metrics(tmp_path, cache_dir):
    cfg = load_config("grad_c", tiny_overrides(tmp_path, cache_dir, **{"train.steps": 2}))
    final = Trainer(cfg).train()
    out = tmp_path / "metrics.json"
    assert eval_main(["--checkpoint", str(tmp_path / "run/checkpoints/last.pt"), "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("abs_rel", "rmse", "mae", "d1", "d2", "d3", "edge_abs_rel", "boundary_f1", "num_valid"):
        assert result["metrics"][key] == pytest.approx(final[key], rel=1e-6, abs=1e-9), key
    assert result["num_samples"] == 4 and result["dataset"] == "synthetic"
    assert result["protocol"]["split"] == "val" and result["protocol"]["crop"] == "none"


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
    import json, sys, torch
    from pathlib import Path
    from edgedepth.training.config import load_config
    from edgedepth.training.trainer import Trainer

    out, overrides = Path(sys.argv[1]), sys.argv[2:]

    def run(run_dir, steps, resume=False):
        cfg = load_config("grad_a", overrides + [f"train.output_dir={run_dir}", f"train.steps={steps}"])
        trainer = Trainer(cfg, resume=resume)
        seen, step = [], trainer.train_step

        def recording(batch):
            terms, grad_norm = step(batch)
            seen.append({"names": list(batch["name"]), "total": terms["total"]})
            return terms, grad_norm

        trainer.train_step = recording
        trainer.train()
        val = [trainer.val_loader.dataset.raw[i]["name"] for i in trainer.val_loader.sampler]
        return trainer, seen, val

    # One uninterrupted run, and one stopped at step 2 then resumed to 4 (same process group).
    trainer, seen, val = run(out / "a", 4)
    _, first, _ = run(out / "b", 2)
    torch.distributed.barrier()  # as a new torchrun would: resume once rank 0 has written last.pt
    _, resumed, _ = run(out / "b", 4, resume=True)
    rank = trainer.dist.rank
    torch.save(trainer.model.state_dict(), out / f"rank{rank}.pt")
    record = {"seen": seen, "val": val, "first": first, "resumed": resumed}
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    trainer.close()
    """
)


@pytest.mark.slow
def test_two_process_gloo_shards_data_and_validation_averages_logs_writes_once_and_resumes(tmp_path, cache_dir):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    overrides = tiny_overrides(tmp_path, cache_dir, **{
        "train.device": "cpu", "train.amp": "none", "train.checkpoint_every": 2, "train.eval_every": 2,
        "train.precise_bn_batches": 2, "data.synthetic.num_val": 5,
    })
    overrides = [item for item in overrides if not item.startswith(("train.output_dir=", "train.steps="))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(worker), str(tmp_path), *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    # Sharding: 12 rooms, 2 ranks, batch 2: an epoch is 3 steps, in which each rank trains on its own 6 rooms.
    epoch0 = [{name for step in rank["seen"][:3] for name in step["names"]} for rank in ranks]
    assert len(epoch0[0]) == len(epoch0[1]) == 6 and not epoch0[0] & epoch0[1]
    assert not set(ranks[0]["seen"][3]["names"]) & set(ranks[1]["seen"][3]["names"])
    # Validation is sharded too: 5 rooms, each evaluated by exactly one rank.
    assert sorted(ranks[0]["val"] + ranks[1]["val"]) == sorted(set(ranks[0]["val"] + ranks[1]["val"]))
    assert len(ranks[0]["val"]) == 3 and len(ranks[1]["val"]) == 2
    # Resume: each rank continues with exactly the rooms (and loss) of the uninterrupted run.
    for rank in ranks:
        assert [s["names"] for s in rank["first"] + rank["resumed"]] == [s["names"] for s in rank["seen"]]
        assert [s["total"] for s in rank["resumed"]] == pytest.approx([s["total"] for s in rank["seen"][2:]])
    # The logged loss is the mean over the ranks, not rank 0's.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "a" / "tb"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("loss/total")}
    for step in range(4):
        mean = (ranks[0]["seen"][step]["total"] + ranks[1]["seen"][step]["total"]) / 2
        assert logged[step + 1] == pytest.approx(mean, rel=1e-5)
    # Rank 0 alone writes: one events file (a writer per rank would make two), one set of checkpoints.
    assert len(list((tmp_path / "a" / "tb").glob("events.out.tfevents.*"))) == 1
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    saved = read_checkpoint(tmp_path / "a" / "checkpoints/last.pt")["model"]
    # Weights are kept identical by DDP; BatchNorm statistics too, since precise BN averages them over ranks.
    assert rank0.keys() == rank1.keys() and len(rank0) > 100
    assert all(torch.allclose(rank0[k].float(), rank1[k].float(), rtol=1e-5, atol=1e-6) for k in rank0)
    assert all(torch.equal(rank0[k], saved[k]) for k in rank0), "rank 0 wrote the checkpoint"


# ----------------------------------------------------------------------------- on a CUDA GPU
# `make test-gpu` runs these (marker torch_cuda); here they skip with the reason. They print the
# figures the GPU check reports: the AMP mode auto chose, the step time, the resume.


@pytest.mark.torch_cuda
def test_cuda_training_with_auto_amp_is_killed_and_resumes_on_the_gpu(tmp_path, cache_dir):
    """A CUDA run with train.amp=auto, SIGKILLed after a checkpoint, resumes on the GPU from its CUDA
    checkpoint (RNG state and all) and trains on with finite losses."""
    from edgedepth.training.trainer import select_amp_dtype

    overrides = tiny_overrides(tmp_path, cache_dir, **{
        "data.height": 96, "data.width": 128, "data.synthetic.num_train": 64, "train.batch_size": 8,
        "train.steps": 5000, "train.checkpoint_every": 25, "train.image_every": 10000, "train.eval_every": 10000,
        "train.device": "cuda", "train.amp": "auto",
    })
    cmd = [sys.executable, "-m", "edgedepth.training.cli", "--config", "baseline", *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if last.exists() and read_checkpoint(last)["train_state"]["step"] >= 50:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"depth-train ended by itself before the kill: {stderr[-2000:]}"
    assert last.exists(), f"no checkpoint before the kill; depth-train said: {stderr[-2000:]}"
    killed_at = read_checkpoint(last)["train_state"]["step"]
    resumed = [f"train.output_dir={tmp_path / 'run'}", f"train.steps={killed_at + 100}"]
    trainer = Trainer(load_config(tmp_path / "run" / "config.yaml", resumed), resume=True)
    assert trainer.device.type == "cuda" and trainer.state.step == killed_at
    torch.cuda.synchronize()
    started = time.perf_counter()
    trainer.train()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    trainer.close()
    assert read_checkpoint(last)["train_state"]["step"] == killed_at + 100
    assert trainer.state.nonfinite_total == 0
    amp = select_amp_dtype("auto", torch.device("cuda", 0))
    print(f"GPU check: {torch.cuda.get_device_name(0)}; train.amp=auto chose {amp}; killed at step {killed_at}, "
          f"resumed on cuda to {killed_at + 100}: {1000 * seconds / 100:.1f} ms/step at 96x128 batch 8 "
          "(evaluation, precise BN and saving included)")


@pytest.mark.torch_cuda
@pytest.mark.slow
def test_two_process_nccl_training_agrees_across_ranks(tmp_path, cache_dir):
    """The 2-process test of above on two GPUs with NCCL: the run ends, and both ranks hold rank 0's
    checkpointed weights (DDP and the averaged precise-BN statistics kept them equal)."""
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 CUDA devices for NCCL (this machine has {torch.cuda.device_count()})")
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    overrides = tiny_overrides(tmp_path, cache_dir, **{
        "train.device": "cuda", "train.amp": "auto", "train.sync_bn": True, "train.checkpoint_every": 2,
        "train.eval_every": 2, "train.precise_bn_batches": 2, "data.synthetic.num_val": 5,
    })
    overrides = [item for item in overrides if not item.startswith(("train.output_dir=", "train.steps="))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           str(worker), str(tmp_path), *overrides]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True, map_location="cpu")
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True, map_location="cpu")
    assert rank0.keys() == rank1.keys()
    assert all(torch.allclose(rank0[k].float(), rank1[k].float(), rtol=1e-4, atol=1e-5) for k in rank0)
    print("GPU check: 2-process NCCL training with sync_bn and resume ended, ranks agree")
