"""Checkpoints: round trip, weights_only loading, atomic writes, and refusing broken files."""
from __future__ import annotations

import argparse
import os
import pickle
import random
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.errors import CheckpointError
from edgedepth.spec import ModelSpec
from edgedepth.training import load_checkpoint, save_checkpoint
from edgedepth.training.checkpoint import read_checkpoint, restore_rng_state, rng_state
from edgedepth.training.model import create_model

SPEC = ModelSpec(
    height=64, width=96, max_depth=20.0, architecture="resnet18",
    arch_options={"activation": "gelu", "attention": "spatial", "rezero": True},
)  # fmt: skip


@pytest.fixture(scope="module")
def trained():
    """A model after one optimiser step (non-trivial BN statistics, alphas and optimiser state)."""
    torch.manual_seed(0)
    model = create_model(SPEC).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, SPEC.height, SPEC.width)).mean().backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    model, optimizer = trained
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, model, SPEC, {"train": {"steps": 1}}, optimizer=optimizer.state_dict(), step=1)
    return path


def test_round_trip_restores_weights_spec_and_eval_mode(trained, saved):
    model, _ = trained
    loaded, spec = load_checkpoint(saved)
    assert spec == SPEC and loaded.spec == SPEC
    original = model.state_dict()
    assert all(torch.equal(original[k], v) for k, v in loaded.state_dict().items())
    assert not loaded.training
    x = torch.randn(1, 3, SPEC.height, SPEC.width)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    model.train()


def test_checkpoint_loads_with_weights_only_and_keeps_resume_state(trained, saved):
    _, optimizer = trained
    data = torch.load(saved, weights_only=True)
    assert data["format"] == "edgedepth-checkpoint" and data["format_version"] == 1
    assert data["config"] == {"train": {"steps": 1}} and data["step"] == 1
    assert ModelSpec.from_dict(data["spec"]) == SPEC
    fresh = torch.optim.AdamW(create_model(SPEC).parameters(), lr=1e-3)
    fresh.load_state_dict(data["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_save_leaves_no_temporary_files(saved):
    assert sorted(p.name for p in saved.parent.iterdir()) == ["last.pt"]


def test_save_killed_midway_keeps_previous_checkpoint(trained, tmp_path, monkeypatch):
    model, _ = trained
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, SPEC, step=1)
    before = path.read_bytes()

    def dies_halfway(obj, handle):
        handle.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, SPEC, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_sigterm_at_any_moment_of_a_save_is_an_interrupt_that_leaves_no_partial_file(trained, tmp_path):
    """A signal in the middle of a record used to surface as torch's RuntimeError ("enforce fail ...
    unexpected pos") raised while closing the half-written archive: a traceback instead of exit 130."""
    from edgedepth.cli import stop_signals_as_interrupt

    model, optimizer = trained
    path = tmp_path / "last.pt"
    outcomes = set()
    for delay in (0.0, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16):
        path.unlink(missing_ok=True)
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
        try:
            with stop_signals_as_interrupt():
                timer.start()
                save_checkpoint(path, model, SPEC, optimizer=optimizer.state_dict(), step=1)
                timer.join()  # the signal lands after the save: still inside the handler
                outcomes.add("finished")
        except KeyboardInterrupt:
            outcomes.add("interrupted")
        assert [p.name for p in tmp_path.iterdir()] in ([], ["last.pt"]), "no temporary file is left"
        if path.exists():
            assert read_checkpoint(path)["step"] == 1
    assert "interrupted" in outcomes


def test_truncated_checkpoint_is_refused_in_one_line(saved, tmp_path):
    truncated = tmp_path / "truncated.pt"
    data = saved.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt") as err:
        load_checkpoint(truncated)
    assert str(truncated) in str(err.value) and "\n" not in str(err.value)


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")


def test_a_folder_passed_as_the_checkpoint_is_named_a_folder_with_the_file_inside(saved, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(saved.read_bytes())
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(run)
    assert "is a folder" in str(err.value) and str(run / "checkpoints" / "best.pt") in str(err.value)
    assert "not found" not in str(err.value)


class RunsACommand:
    """What a malicious checkpoint holds: unpickling it calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_malicious_checkpoint_is_refused_naming_the_global_never_advising_an_unsafe_load(writer, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "edgedepth-checkpoint", "format_version": 1, "model": RunsACommand(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert "posix.system" in message and str(path) in message and "\n" not in message
    assert "weights_only=False" not in message.replace("`", "").replace(" set to ", "=")
    assert "will likely succeed" not in message
    assert not marker.exists(), "the payload never ran"


def test_a_checkpoint_holding_a_python_object_is_refused_without_terminal_escapes(tmp_path):
    path = tmp_path / "namespace.pt"
    torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert "argparse.Namespace" in message and "\x1b" not in message and "\n" not in message
    assert "will likely succeed" not in message


def test_bare_state_dict_is_not_an_edgedepth_checkpoint(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(create_model(SPEC).encoder.state_dict(), path)
    with pytest.raises(CheckpointError, match="not an edgedepth checkpoint.*model.pretrained=<path>"):
        read_checkpoint(path)


def test_checkpoint_whose_spec_names_another_architecture_is_refused(saved, tmp_path):
    data = torch.load(saved, weights_only=True)
    data["spec"]["architecture"] = "resnet34"
    path = tmp_path / "relabelled.pt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="holds weights for resnet18 but its spec says resnet34") as err:
        load_checkpoint(path)
    assert "missing keys (encoder.layer1.2." in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_with_unknown_architecture_is_refused(saved, tmp_path):
    data = torch.load(saved, weights_only=True)
    data["spec"]["architecture"] = "vit_tiny"
    path = tmp_path / "vit.pt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="unusable spec: model architecture 'vit_tiny' is unknown"):
        load_checkpoint(path)


def test_state_that_weights_only_would_refuse_is_rejected_before_writing(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "bad.pt"
    with pytest.raises(CheckpointError, match=r"checkpoint\['extra'\]\['mean'\] is a numpy.ndarray"):
        save_checkpoint(path, model, SPEC, extra={"mean": np.zeros(3)})
    with pytest.raises(CheckpointError, match="reserved keys"):
        save_checkpoint(path, model, SPEC, format="mine")
    assert not path.exists()


def test_saving_under_a_spec_of_another_architecture_is_refused(trained, tmp_path):
    model, _ = trained
    with pytest.raises(CheckpointError, match="resnet18 model under a spec that says resnet34"):
        save_checkpoint(tmp_path / "x.pt", model, SPEC.replace(architecture="resnet34"))


def test_rng_state_survives_a_checkpoint_and_replays_the_same_numbers(trained, tmp_path):
    model, _ = trained
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's legacy state
    path = tmp_path / "rng.pt"
    save_checkpoint(path, model, SPEC, rng=rng_state())
    first = (torch.rand(4), np.random.standard_normal(4), [random.random() for _ in range(4)])
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(read_checkpoint(path)["rng"])
    again = (torch.rand(4), np.random.standard_normal(4), [random.random() for _ in range(4)])
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]
