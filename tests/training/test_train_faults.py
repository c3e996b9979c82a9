"""depth-train, depth-eval and depth-ablate under faults (issue 17): a full disk, a read-only folder,
a signal, a corrupt dataset read by DataLoader workers, and --resume before the first checkpoint.

Nothing is lost, nothing half-written is left, and every failure is one line on stderr.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import List

import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from edgedepth.training.ablate import ablate_main  # noqa: E402
from edgedepth.training.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402
from edgedepth.training.cli import eval_main, train_main  # noqa: E402
from edgedepth.training.config import config_to_dict, load_config, save_config, spec_from_config  # noqa: E402
from edgedepth.training.model import create_model  # noqa: E402

from faults import leftovers, read_only_dir, run_command, signal_after, small_disk  # noqa: E402


def overrides(run_dir: Path, cache: Path, **extra) -> List[str]:
    """A run a 2-core CPU trains in seconds: 64x64 synthetic rooms, batch 2, a small decoder."""
    values = {
        "data.height": 64, "data.width": 64, "data.num_workers": 0, "data.synthetic.num_train": 8,
        "data.synthetic.num_val": 2, "data.synthetic.cache_dir": str(cache), "train.batch_size": 2,
        "train.steps": 4, "train.warmup_steps": 1, "train.log_every": 1, "train.image_every": 1000,
        "train.eval_every": 1000, "train.checkpoint_every": 2, "train.output_dir": str(run_dir),
        "model.decoder_channels": "[64,32,32,16,16]", "model.pretrained": "none", "eval.batch_size": 2,
        "train.precise_bn_batches": 0,
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic-cache")


def error_lines(err: str, prog: str) -> List[str]:
    """The command's own lines on stderr (tqdm bars and log records left out)."""
    assert "Traceback" not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith(f"{prog}:")]


def untrained_checkpoint(path: Path, cache: Path) -> Path:
    cfg = load_config("baseline", overrides(path.parent / "run", cache))
    save_checkpoint(path, create_model(spec_from_config(cfg), pretrained="none"), spec_from_config(cfg),
                    config=config_to_dict(cfg))
    return path


# --------------------------------------------------------------------------- D3: full disk, read-only folder


def test_train_on_a_full_disk_fails_in_one_line_naming_the_checkpoint(tmp_path, cache_dir, capsys):
    with small_disk(1024) as disk:
        code = train_main(["--config", "baseline", *overrides(disk / "run", cache_dir)])
        err = capsys.readouterr().err
        lines = error_lines(err, "depth-train")
        assert code == 1, err[-3000:]
        assert len(lines) == 1 and "error:" in lines[0]
        assert str(disk / "run" / "checkpoints" / "last.pt") in lines[0] and "No space left on device" in lines[0]
        assert "enforce fail" not in lines[0]
        assert leftovers(disk) == [], "the half-written checkpoint is removed"
        assert not (disk / "run" / "checkpoints" / "last.pt").exists(), "no partial checkpoint at the final path"


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # a thread's traceback
def test_a_disk_filled_by_tensorboard_events_is_one_line_naming_the_events_folder(tmp_path, cache_dir, capsys):
    """TensorBoard writes from a thread of its own: its OSError was a thread traceback, then raised
    again on the next write as "a file: No space left on device", naming nothing."""
    with small_disk(200) as disk:
        extra = {"train.steps": 40, "train.image_every": 1, "train.checkpoint_every": 1000}
        code = train_main(["--config", "baseline", *overrides(disk / "run", cache_dir, **extra)])
        err = capsys.readouterr().err
        lines = error_lines(err, "depth-train")
        assert code == 1, err[-3000:]
        assert len(lines) == 1 and str(disk / "run" / "tb") in lines[0] and "No space left on device" in lines[0]
        assert leftovers(disk) == []


def test_a_full_disk_while_rendering_the_synthetic_cache_is_one_line_not_a_crash(tmp_path):
    """The cache is a memory map: writing into pages the disk cannot hold was SIGBUS (exit 135),
    with the temporary file and the render workers left behind."""
    with small_disk(1024) as disk:
        argv = ["depth-train", "--config", "baseline",
                *overrides(tmp_path / "run", disk / "cache", **{"data.synthetic.num_train": 200})]
        done = run_command(argv, timeout=300, cwd=tmp_path)
        lines = error_lines(done.stderr, "depth-train")
        assert done.returncode == 1, done.stderr[-3000:]
        assert len(lines) == 1 and "No space left on device" in lines[0] and str(disk / "cache") in lines[0]
        assert leftovers(disk) == []


def test_train_into_a_read_only_folder_is_refused_before_any_work(tmp_path, capsys):
    cache = tmp_path / "cache"
    with read_only_dir() as folder:
        code = train_main(["--config", "baseline", *overrides(folder / "run", cache)])
    lines = error_lines(capsys.readouterr().err, "depth-train")
    assert code == 2
    assert len(lines) == 1 and "train.output_dir" in lines[0] and str(folder / "run") in lines[0]
    assert "read-only" in lines[0].lower()
    assert not cache.exists(), "refused before the data was rendered"


def test_eval_output_in_a_read_only_folder_is_refused_before_evaluating(tmp_path, capsys):
    checkpoint = untrained_checkpoint(tmp_path / "best.pt", tmp_path / "cache")
    with read_only_dir() as folder:
        code = eval_main(["--checkpoint", str(checkpoint), "--output", str(folder / "m.json")])
    lines = error_lines(capsys.readouterr().err, "depth-eval")
    assert code == 2 and len(lines) == 1 and "--output" in lines[0] and str(folder / "m.json") in lines[0]
    assert not (tmp_path / "cache").exists(), "refused before the evaluation data was rendered"


def test_eval_output_equal_to_the_checkpoint_is_refused(tmp_path, capsys):
    checkpoint = untrained_checkpoint(tmp_path / "best.pt", tmp_path / "cache")
    before = checkpoint.read_bytes()
    assert eval_main(["--checkpoint", str(checkpoint), "--output", str(checkpoint)]) == 2
    lines = error_lines(capsys.readouterr().err, "depth-eval")
    assert len(lines) == 1 and "--checkpoint" in lines[0]
    assert checkpoint.read_bytes() == before


def test_ablate_into_a_read_only_folder_is_refused_before_any_work(tmp_path, capsys):
    cache = tmp_path / "cache"
    with read_only_dir() as folder:
        code = ablate_main(["--configs", "baseline", "--output-dir", str(folder / "out"), *overrides(tmp_path, cache)])
    lines = error_lines(capsys.readouterr().err, "depth-ablate")
    assert code == 2 and len(lines) == 1 and "--output-dir" in lines[0]
    assert not cache.exists()


# --------------------------------------------------------------------------- D7: worker errors


def test_a_corrupt_h5_read_by_dataloader_workers_is_one_line(tmp_path, capsys):
    for split in ("train", "val"):
        (tmp_path / "nyu" / split).mkdir(parents=True)
        for index in range(3):
            (tmp_path / "nyu" / split / f"{index}.h5").write_bytes(bytes(range(256)) * 20)
    code = train_main(["--config", "nyu", f"data.root={tmp_path / 'nyu'}", "model.pretrained=none",
                       "data.height=64", "data.width=64", "train.steps=3", "train.batch_size=2",
                       "data.num_workers=2", f"train.output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    lines = error_lines(err, "depth-train")
    assert code == 1
    assert len(lines) == 1 and "HDF5 file" in lines[0] and ".h5" in lines[0]
    assert "DataLoader worker" not in lines[0] and "Original Traceback" not in lines[0] and 'File "' not in lines[0]


# --------------------------------------------------------------------------- D14: --resume before a checkpoint


def test_resume_of_a_run_killed_before_its_first_checkpoint_says_to_start_again(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = load_config("baseline", overrides(run, tmp_path / "cache", **{"train.checkpoint_every": 20}))
    run.mkdir()
    save_config(cfg, run / "config.yaml")  # what depth-train writes before its first step
    assert train_main(["--resume", str(run)]) == 2
    lines = error_lines(capsys.readouterr().err, "depth-train")
    assert len(lines) == 1 and str(run) in lines[0] and "no checkpoint yet" in lines[0]
    assert "step 20" in lines[0] and "without --resume" in lines[0] and ".pt file" not in lines[0]
    assert f"depth-train --config {run / 'config.yaml'} train.output_dir={run}" in lines[0]


# --------------------------------------------------------------------------- signals


def test_sigterm_during_training_keeps_written_checkpoints_and_leaves_no_temp_file(tmp_path, cache_dir):
    run = tmp_path / "run"
    argv = ["depth-train", "--config", "baseline",
            *overrides(run, cache_dir, **{"train.steps": 400, "train.eval_every": 2, "train.checkpoint_every": 3,
                                          "data.num_workers": 2, "eval.max_samples": 2})]
    # Sent as soon as last.pt (or its temporary file) appears: possibly while it is being written.
    done = signal_after(argv, signal.SIGTERM, after=run / "checkpoints" / "last.pt", timeout=240, cwd=tmp_path)
    assert done.returncode == 130, done.stderr[-3000:]
    lines = error_lines(done.stderr, "depth-train")
    assert lines == ["depth-train: interrupted by SIGTERM; finished outputs kept, partial ones removed"]
    assert leftovers(tmp_path) == []
    assert read_checkpoint(run / "checkpoints" / "best.pt")["train_state"]["step"] == 2, "written before: loads"
    if (run / "checkpoints" / "last.pt").exists():
        assert read_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["step"] == 3
    assert list((run / "tb").glob("events.out.tfevents.*")), "the TensorBoard writer was closed, its events kept"


@pytest.mark.slow
def test_sigint_during_an_ablation_keeps_finished_rows_and_leaves_no_temp_file(tmp_path, cache_dir):
    out = tmp_path / "out"
    argv = ["depth-ablate", "--configs", "baseline", "grad_a", "--output-dir", str(out),
            *overrides(tmp_path / "unused", cache_dir, **{"train.steps": 2, "eval.max_samples": 2})]
    done = signal_after(argv, signal.SIGINT, after=out / "results.md", timeout=300, cwd=tmp_path)
    assert done.returncode == 130, done.stderr[-3000:]
    assert error_lines(done.stderr, "depth-ablate")[-1].startswith("depth-ablate: interrupted by SIGINT")
    assert leftovers(tmp_path) == []
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [row["config"] for row in rows] == ["baseline"], "the finished config is kept"
    assert read_checkpoint(out / "baseline" / "checkpoints" / "last.pt")["train_state"]["step"] == 2
