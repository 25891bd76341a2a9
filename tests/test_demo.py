"""`affinegan-tf demo` on a tiny step budget: every promised output, and a rerun that reuses."""

from __future__ import annotations

import json
import subprocess

import imageio.v3 as iio
import pytest
from cli_helpers import run_cli

STEPS = 20


def demo(out_dir) -> subprocess.CompletedProcess:
    """The installed console script, run outside the checkout (as after `pip install .`)."""
    return run_cli("demo", "--out", str(out_dir), "--steps", str(STEPS), cwd=out_dir.parent)


@pytest.mark.slow
def test_demo_writes_everything_and_a_rerun_reuses_it(tmp_path):
    out_dir = tmp_path / "demo"
    first = demo(out_dir)
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["steps"] == STEPS
    assert (out_dir / "exported" / "manifest.json").is_file()
    assert (out_dir / "exported" / "saved_model" / "1" / "saved_model.pb").is_file()
    assert list((out_dir / "exported").glob("*.tflite")) and list(
        (out_dir / "exported").glob("*.onnx")
    )
    held_out = sorted(path.name for path in (out_dir / "data" / "test" / "img").iterdir())
    for name in held_out:
        frames = iio.imread(out_dir / "gifs" / f"{name}.gif")
        assert frames.shape[1:3] == (64, 64) and len(frames) > 16  # pingpong sweep
    overview = iio.imread(out_dir / "gifs" / "overview.gif")
    assert overview.shape[1:3] == (64, 64 * 6)
    assert (out_dir / summary["intensity_plot"].split("/")[-1]).is_file()
    assert set(summary["spearman_held_out"]) == {
        "all",
        "complete",
        "incomplete",
        "periodic",
        "shuffled",
    }
    assert "Spearman" in first.stdout
    # The issue-13 figures, measured by the demo itself (pixels in [0, 1]).
    for key in ("l1_at_zero_intensity", "l1_generated", "l1_copy_input"):
        assert 0.0 <= summary[key] < 1.0, key
    assert summary["l1_copy_input"] > 0.0  # held-out videos move, so copying is not free
    assert len(summary["apex_of_complete_videos"]) == 3
    assert "copying the input" in first.stdout

    checkpoints = sorted((out_dir / "run" / "checkpoints").glob("ckpt-*.index"))
    second = demo(out_dir)
    assert "Reusing the synthetic data set" in second.stderr
    assert "resuming or reusing it (not retraining)" in second.stderr
    assert "Reusing the export" in second.stderr
    assert sorted((out_dir / "run" / "checkpoints").glob("ckpt-*.index")) == checkpoints
    assert json.loads((out_dir / "summary.json").read_text())["steps"] == STEPS


def test_plan_steps_fills_the_training_minutes_at_a_real_runs_speed():
    from affinegan_tf.demo import FIT_SPEED_SHARE, MIN_STEPS, OVERHEAD_MINUTES, plan_steps

    # 9.1 steps/s probed, 9 minutes: 8 of them train at the real run's 0.9 x 9.1 steps/s.
    steps, rate = plan_steps(9.1, 9.0, 12000)
    assert rate == pytest.approx(9.1 * FIT_SPEED_SHARE)
    assert steps == int(9.1 * FIT_SPEED_SHARE * (9.0 - OVERHEAD_MINUTES) * 60)  # 3931
    assert steps / rate / 60 == pytest.approx(9.0 - OVERHEAD_MINUTES, abs=0.01)
    assert plan_steps(9.1, 60.0, 12000)[0] == 12000  # never past the recipe's steps
    assert plan_steps(9.1, 60.0, None)[0] > 12000
    assert plan_steps(0.1, 1.0, 12000)[0] == MIN_STEPS  # a tiny budget still trains something


def test_budget_advice_names_the_minutes_that_reach_the_reference_steps():
    from affinegan_tf.demo import OVERHEAD_MINUTES, REFERENCE_STEPS, budget_advice

    assert budget_advice(12.0, 5700) is None  # a machine like the Zen 5's: nothing to say
    advice = budget_advice(2.65, 1271)  # 2 Zen 3 cores, measured
    minutes = REFERENCE_STEPS / 2.65 / 60 + OVERHEAD_MINUTES  # 37.5
    assert "1271 steps" in advice and f"--minutes {int(minutes) + 1}" in advice
