"""depth-ablate (issue 13): configs x seeds, resumable, ablation.{json,md} with exactly the issue's
keys, paired comparisons with t-intervals, and the PNGs."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List

import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")
pytest.importorskip("matplotlib", reason="needs matplotlib (the train extra)")

from edgedepth.errors import UsageError  # noqa: E402
from edgedepth.training import ablate  # noqa: E402
from edgedepth.training.ablate import COMPARED_METRICS, ablate_main, mean_std_ci, paired_comparison, plan_runs, reading  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny(cache: Path, **extra) -> List[str]:
    """A run a 2-core CPU trains in seconds: 64x64 synthetic rooms, batch 2, a small decoder."""
    values = {
        "data.height": 64, "data.width": 64, "data.num_workers": 0, "data.synthetic.num_train": 8,
        "data.synthetic.num_val": 2, "data.synthetic.cache_dir": str(cache), "train.batch_size": 2,
        "train.steps": 4, "train.warmup_steps": 1, "train.log_every": 1, "train.image_every": 1000,
        "train.eval_every": 2, "train.checkpoint_every": 2, "model.decoder_channels": "[64,32,32,16,16]",
        "model.pretrained": "none", "eval.batch_size": 2, "train.precise_bn_batches": 0,
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """2 configs x 2 seeds, trained once for the tests below."""
    root = tmp_path_factory.mktemp("study")
    argv = ["--configs", "baseline", "grad_a", "--seeds", "0", "1", "--output-dir", str(root / "out"),
            *tiny(root / "cache")]
    assert ablate_main(argv) == 0
    return root / "out", argv


def test_tiny_study_writes_exactly_the_issues_keys(study):
    out, _ = study
    data = json.loads((out / "ablation.json").read_text())
    assert list(data) == ["runs", "summary", "comparisons"]
    assert [(r["config"], r["seed"]) for r in data["runs"]] == [
        ("baseline", 0), ("grad_a", 0), ("baseline", 1), ("grad_a", 1)]
    for run in data["runs"]:
        assert list(run) == ["config", "seed", "metrics", "loss_shares", "train_seconds"]
        assert list(run["loss_shares"]) == ["ssi", "silog", "grad"]
        assert sum(run["loss_shares"].values()) == pytest.approx(1.0, abs=1e-4)
        assert 0.0 <= run["metrics"]["d1"] <= 1.0 and run["train_seconds"] > 0
        assert (run["loss_shares"]["grad"] > 0) is (run["config"] == "grad_a")
    assert data["runs"][0]["metrics"] != data["runs"][2]["metrics"], "another seed trains another model"
    for entry in data["summary"]:
        assert list(entry) == ["config", "n", "metrics", "loss_shares"] and entry["n"] == 2
        d1 = entry["metrics"]["d1"]
        assert list(d1) == ["mean", "std", "ci95"]
        values = [r["metrics"]["d1"] for r in data["runs"] if r["config"] == entry["config"]]
        assert d1["mean"] == pytest.approx(sum(values) / 2)
        assert d1["ci95"][0] < d1["mean"] < d1["ci95"][1]
    assert [c["metric"] for c in data["comparisons"]] == list(COMPARED_METRICS)
    for comparison in data["comparisons"]:
        assert list(comparison) == ["a", "b", "metric", "mean_diff", "ci95", "p_value"]
        assert (comparison["a"], comparison["b"]) == ("grad_a", "baseline")
    d1 = data["comparisons"][COMPARED_METRICS.index("d1")]
    by = {(r["config"], r["seed"]): r["metrics"]["d1"] for r in data["runs"]}
    assert d1["mean_diff"] == pytest.approx(sum(by["grad_a", s] - by["baseline", s] for s in (0, 1)) / 2)


def test_tiny_study_writes_the_markdown_and_the_figures(study):
    out, _ = study
    page = (out / "ablation.md").read_text()
    assert "| baseline | 2 | 0.5/0.5/0 |" in page and "| grad_a | 2 | 0.4/0.4/0.2 |" in page
    assert " ± " in page and "## Paired differences against `baseline`" in page and "## Reading" in page
    # The validation curve at 60/80/100% of the 4 steps (validated at steps 2 and 4; 2 is nearest 60%).
    assert "| config | n | step 2 | step 2 | step 4 | last change |" in page
    for name in ("loss_curves.png", "metrics.png", "scene_baseline.png", "scene_grad_a.png"):
        png = (out / name).read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000, name
        assert f"({name})" in page
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 4 and all(Path(row["run_dir"], "result.json").is_file() for row in rows)
    assert not list(out.rglob("*.tmp")), "no temporary file left"


def test_rerun_skips_finished_runs(study, monkeypatch):
    out, argv = study
    before = (out / "baseline" / "seed0" / "result.json").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("edgedepth.training.trainer.Trainer.train", no_training)
    assert ablate_main(argv) == 0
    assert (out / "baseline" / "seed0" / "result.json").read_bytes() == before
    assert len(json.loads((out / "ablation.json").read_text())["runs"]) == 4


def test_rerun_with_other_overrides_is_refused_before_any_work(study, capsys):
    out, argv = study
    changed = [arg.replace("train.steps=4", "train.steps=5") for arg in argv]
    assert ablate_main(changed) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("depth-ablate:")]
    assert len(lines) == 1 and "trained with another config" in lines[0] and "--output-dir" in lines[0]


def test_an_unfinished_run_resumes_from_its_checkpoint(tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    argv = ["--configs", "baseline", "--seeds", "3", "--output-dir", str(out), "--no-plots", *tiny(cache)]
    assert ablate_main(argv) == 0
    run = out / "baseline" / "seed3"
    first = json.loads((run / "result.json").read_text())
    assert first["seed"] == 3 and first["resumed"] is False
    (run / "result.json").unlink()  # as if stopped after the last checkpoint
    assert ablate_main(argv) == 0
    again = json.loads((run / "result.json").read_text())
    assert again["resumed"] is True and again["metrics"] == pytest.approx(first["metrics"])
    # The resumed trainer saw no step: the shares come from the run's TensorBoard events (steps 1-4).
    assert again["loss_shares"] == pytest.approx(first["loss_shares"], abs=0.03)
    assert again["loss_shares"]["grad"] == 0.0 and sum(again["loss_shares"].values()) == pytest.approx(1.0)
    data = json.loads((out / "ablation.json").read_text())
    assert data["summary"][0]["n"] == 1 and data["summary"][0]["metrics"]["d1"]["ci95"] is None
    assert data["comparisons"] == []


# ----------------------------------------------------------------------------- statistics


def test_mean_std_and_t_interval():
    stat = mean_std_ci([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert stat["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert mean_std_ci([5.0]) == {"mean": 5.0, "std": None, "ci95": None}


def test_paired_comparison_pairs_by_seed():
    a = {0: 2.0, 1: 4.0, 2: 6.0, 7: 100.0}
    b = {0: 1.0, 1: 2.0, 2: 3.0}
    result = paired_comparison(a, b)  # differences 1, 2, 3: seed 7 has no pair
    assert result["n"] == 3 and result["mean_diff"] == pytest.approx(2.0)
    assert result["p_value"] == pytest.approx(0.0742, abs=1e-4)  # t = 2 / (1 / sqrt 3), 2 dof, two-sided
    one = paired_comparison({0: 2.0}, {0: 1.0})
    assert one == {"n": 1, "mean_diff": 1.0, "ci95": None, "p_value": None}


def test_reading_names_the_differences_outside_their_interval_and_their_direction():
    comparisons = [
        {"a": "x", "b": "base", "metric": "abs_rel", "mean_diff": -0.01, "ci95": [-0.02, -0.005], "p_value": 0.01},
        {"a": "x", "b": "base", "metric": "boundary_f1", "mean_diff": -0.03, "ci95": [-0.05, -0.01], "p_value": 0.02},
        {"a": "x", "b": "base", "metric": "d1", "mean_diff": 0.01, "ci95": [-0.01, 0.03], "p_value": 0.3},
        {"a": "y", "b": "base", "metric": "d1", "mean_diff": 0.0, "ci95": [-0.01, 0.01], "p_value": 0.9},
    ]
    text = "\n".join(reading(comparisons, "base", 3))
    assert "abs_rel better by 0.0100" in text and "boundary_f1 worse by 0.0300" in text
    assert "within the interval: d1" in text
    assert "`y` vs `base`: every difference is within its 95% interval" in text
    assert "no interval" in reading(comparisons, "base", 1)[0]


# ----------------------------------------------------------------------------- the plan and refusals


def test_folders_without_and_with_seeds(tmp_path):
    assert [r.run_dir for r in plan_runs(["baseline", "configs/grad_a.yaml"], None, tmp_path)] == [
        tmp_path / "baseline", tmp_path / "grad_a"]
    runs = plan_runs(["baseline", "grad_a"], [0, 1], tmp_path)
    assert [(r.config, r.seed) for r in runs] == [("baseline", 0), ("grad_a", 0), ("baseline", 1), ("grad_a", 1)]
    assert runs[1].run_dir == tmp_path / "grad_a" / "seed0"
    with pytest.raises(UsageError, match="distinct"):
        plan_runs(["baseline"], [0, 0], tmp_path)
    with pytest.raises(UsageError, match="more than once"):
        plan_runs(["baseline", "configs/baseline.yaml"], [0], tmp_path)


@pytest.mark.parametrize("extra,message", [
    (["--seeds", "0", "train.seed=3"], "--seeds"),
    (["--seeds", "0", "--baseline", "grad_b"], "--baseline grad_b"),
    (["--seeds", "0", "--configs", "baseline", "nosuchconfig"], "nosuchconfig"),
])
def test_bad_invocations_are_one_line_before_any_training(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.setattr(ablate, "run_experiment", lambda *a: pytest.fail("trained despite a bad invocation"))
    argv = ["--configs", "baseline", "grad_a", "--output-dir", str(tmp_path / "out"), *extra]
    assert ablate_main(argv) != 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("depth-ablate:")]
    assert len(lines) == 1 and message in lines[0]


def test_missing_matplotlib_is_said_before_any_training(tmp_path, capsys, monkeypatch):
    real = ablate.importlib.util.find_spec
    monkeypatch.setattr(ablate.importlib.util, "find_spec", lambda name: None if name == "matplotlib" else real(name))
    monkeypatch.setattr(ablate, "run_experiment", lambda *a: pytest.fail("trained without a way to plot"))
    assert ablate_main(["--configs", "baseline", "--output-dir", str(tmp_path / "out")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("depth-ablate:")]
    assert len(lines) == 1 and "matplotlib" in lines[0] and "--no-plots" in lines[0]


def test_the_study_script_names_shipped_configs_and_is_valid_bash():
    import re
    import subprocess

    from edgedepth.training.config import shipped_config_names

    script = Path(__file__).resolve().parents[2] / "scripts" / "loss_study.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    # The sweeps' default config lists: WEIGHTS=(${WEIGHTS:-baseline grad_a ...}).
    groups = re.findall(r"^[A-Z]+=\(\$\{[A-Z]+:-([\w ]+)\}\)$", text, re.M)
    named = {name for group in groups for name in group.split()}
    assert {"baseline", "grad_a", "grad_a_norm", "baseline_norm", "rezero", "gelu"} <= named
    assert named <= set(shipped_config_names())
