"""fit(): learning, checkpoints, bit-exact resume, signals, the NaN guard, config handling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from affinegan_tf.checkpoints import checkpoint_step, latest_checkpoint, load_model
from affinegan_tf.config import RunConfig
from affinegan_tf.errors import UserError
from affinegan_tf.optimizers import ConstantThenLinearDecay
from affinegan_tf.recipes import resolve_config
from affinegan_tf.training import fit

REPO = Path(__file__).resolve().parents[1]


def tiny_config(data, **train):
    values = {"checkpoint_every": 1000, "log_every": 10, "learning_rate": 1e-3, **train}
    return resolve_config(str(data), preset_name="tiny", train_overrides=values)


def variables_of(run_dir):
    model, _ = load_model(run_dir)
    return [variable.numpy() for variable in model.variables]


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    schedule = ConstantThenLinearDecay(2e-4, total_steps=100, decay_steps=40)
    rates = [float(schedule(step)) for step in (0, 59, 60, 80, 100, 120)]
    np.testing.assert_allclose(rates, [2e-4, 2e-4, 2e-4, 1e-4, 0.0, 0.0], rtol=1e-6, atol=1e-12)


def test_recipe_and_flags_override_the_preset(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('preset = "tiny"\n[train]\nlearning_rate = 5e-4\nsteps = 77\n')
    config = resolve_config(
        str(tmp_path), pipeline=str(recipe), train_overrides={"steps": 12, "batch_size": None}
    )
    assert config.preset == "tiny" and config.model.image_size == 64
    assert config.train.learning_rate == 5e-4  # from the recipe
    assert config.train.steps == 12  # the flag wins
    for name in ("toy", "ck_mixed", "cheeks_eyes"):
        resolve_config(str(tmp_path), pipeline=str(REPO / "pipelines" / f"{name}.toml"))
    recipe.write_text("[train]\nlearning_rat = 1\n")
    with pytest.raises(UserError, match="learning_rat"):
        resolve_config(str(tmp_path), pipeline=str(recipe))


def test_a_recipe_sets_loss_weights_in_a_train_subtable(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('preset = "tiny"\n[train.loss_weights]\nreconstruction = 30.0\n')
    weights = resolve_config(str(tmp_path), pipeline=str(recipe)).train.loss_weights
    assert weights.reconstruction == 30.0
    assert weights.global_adversarial == 1.0 and weights.e0_reconstruction == 10.0  # the paper's
    recipe.write_text("[train.loss_weights]\nreconstructon = 30.0\n")
    with pytest.raises(UserError, match="reconstructon"):
        resolve_config(str(tmp_path), pipeline=str(recipe))


def assert_complete_run_folder(run_dir, steps, checkpoint_every):
    """The parts of a finished run folder: config, checkpoints, samples, logs, intensity range."""
    # "auto" resolved against the data: the toy set has mouth masks.
    assert RunConfig.load(run_dir / "config.json").model.local_discriminator == "on"
    saves = range(checkpoint_every, steps + 1, checkpoint_every)
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*.index"))
    assert checkpoints == [f"ckpt-{step}.index" for step in saves]
    samples = sorted(p.name for p in (run_dir / "samples").glob("*.gif"))
    assert samples == [f"step_{step:07d}.gif" for step in saves]
    assert list((run_dir / "logs").glob("events.out.tfevents.*"))
    seen = json.loads((run_dir / "intensity_range.json").read_text())
    assert seen["step"] == steps and seen["frames"] == 8 * 15  # 8 videos, frames 1..15 each
    assert seen["min"] <= seen["p05"] <= seen["mean"] <= seen["p95"] <= seen["max"]
    # The apex (what a = 1 means): the median of the 8 videos' largest intensities.
    assert len(seen["video_maxima"]) == 8 and max(seen["video_maxima"]) == seen["max"]
    assert seen["apex"] == pytest.approx(float(np.median(seen["video_maxima"])))


def test_a_short_fit_writes_a_complete_run_folder(toy_data, tmp_path):
    """The run folder's parts after 4 steps (the 300-step version below checks learning too)."""
    run_dir = tmp_path / "run"
    result = fit(tiny_config(toy_data, steps=4, checkpoint_every=2), run_dir)
    assert result.step == 4 and not result.interrupted
    assert_complete_run_folder(run_dir, steps=4, checkpoint_every=2)


@pytest.mark.slow  # 300 steps with the mouth D: ~2 min on 2 cores
def test_fit_learns_and_writes_a_complete_run_folder(toy_data, tmp_path):
    import tensorflow as tf

    from affinegan_tf.data.pipeline import load_training_set, make_dataset
    from affinegan_tf.gan import AffineGAN

    config = tiny_config(toy_data, steps=300, checkpoint_every=150)
    run_dir = tmp_path / "run"
    result = fit(config, run_dir)
    assert result.step == 300 and not result.interrupted

    assert_complete_run_folder(run_dir, steps=300, checkpoint_every=150)
    saved = RunConfig.load(run_dir / "config.json")

    # The L1 reconstruction of the targets on fixed samples clearly drops.
    training_set = load_training_set(saved.data, saved.model.load_size)
    dataset = make_dataset(training_set, 64, saved.model.load_size, 5, 4, seed=123)
    batch = next(iter(dataset))
    trained, _ = load_model(run_dir)
    untrained = AffineGAN(saved.model, use_local_discriminator=True, seed=saved.train.seed)
    untrained.build()

    def l1(model):
        forward = model._generator_forward(batch, training=False)
        return float(tf.reduce_mean(tf.abs(forward.fakes - forward.targets)))

    before, after = l1(untrained), l1(trained)
    assert after < 0.5 * before, (before, after)


@pytest.mark.slow  # two fits: ~30 s
def test_a_run_folder_of_another_config_is_refused_unless_forced(toy_data, tmp_path):
    run_dir = tmp_path / "run"
    fit(tiny_config(toy_data, steps=2), run_dir)
    other = tiny_config(toy_data, steps=4, learning_rate=5e-4)
    with pytest.raises(UserError, match="learning_rate"):
        fit(other, run_dir)
    assert fit(other, run_dir, force=True).step == 4


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(toy_data, tmp_path):
    run_dir = tmp_path / "run"
    fit(tiny_config(toy_data, steps=2), run_dir)
    exploding = tiny_config(toy_data, steps=20, learning_rate=1e30)
    with pytest.raises(UserError, match=r"became NaN or Inf.*ckpt-2") as error:
        fit(exploding, run_dir, force=True)
    assert "loss term '" in str(error.value)
    remaining = sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*.index"))
    assert remaining == ["ckpt-2.index"]
    kept = load_model(run_dir)[0]  # the kept checkpoint loads and holds finite weights
    assert all(np.isfinite(variable.numpy()).all() for variable in kept.generator.weights)


@pytest.mark.slow  # two processes that each build and trace the model: ~80 s on 2 cores
def test_sigterm_saves_and_the_same_command_resumes_bit_for_bit(toy_data, tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "affinegan_tf",
        "fit",
        "--data",
        str(toy_data),
        "--out",
        str(run_dir),
        "--preset",
        "tiny",
        "--steps",
        "24",
        "--checkpoint-every",
        "1000",
        # With the generator's weight average: it must resume bit for bit too.
        "--ema-decay",
        "0.99",
    ]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment
    )
    deadline = time.monotonic() + 240
    # Wait until training is under way (the first progress line), then ask it to stop.
    seen = ""
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen += line
        if "step 1/24" in line or not line:
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=240)
    seen += rest
    assert process.returncode == 130, seen[-2000:]  # stopped early, checkpoint saved
    assert "Received SIGTERM" in seen and "Rerun the command to resume" in seen
    step = checkpoint_step(latest_checkpoint(run_dir))
    assert 1 <= step < 24

    finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"Resuming {run_dir} at step {step}/24" in finished.stderr
    assert checkpoint_step(latest_checkpoint(run_dir)) == 24
    assert json.loads((run_dir / "config.json").read_text())["train"]["ema_decay"] == 0.99

    # The interrupted-and-resumed run ends exactly where an uninterrupted one does: same samples,
    # same schedule, same random draws, same weight average.
    straight = tmp_path / "straight"
    fit(
        tiny_config(toy_data, steps=24, checkpoint_every=1000, learning_rate=None, ema_decay=0.99),
        straight,
    )
    for a, b in zip(variables_of(straight), variables_of(run_dir), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # trains the same run twice: ~45 s
def test_groups_of_steps_per_execution_give_the_same_run(toy_data, tmp_path):
    """steps_per_execution only changes how often the host looks in: same weights, same files."""
    one = fit(tiny_config(toy_data, steps=8, checkpoint_every=4, log_every=4), tmp_path / "one")
    grouped = fit(
        tiny_config(toy_data, steps=8, checkpoint_every=4, log_every=4, steps_per_execution=4),
        tmp_path / "grouped",
    )
    assert grouped.step == one.step == 8 and set(grouped.logs) == set(one.logs)
    for run in ("one", "grouped"):
        saved = sorted(p.name for p in (tmp_path / run / "checkpoints").glob("ckpt-*.index"))
        assert saved == ["ckpt-4.index", "ckpt-8.index"]
    grouped_variables = variables_of(tmp_path / "grouped")
    for a, b in zip(variables_of(tmp_path / "one"), grouped_variables, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="steps_per_execution"):
        tiny_config(toy_data, steps_per_execution=3)  # does not divide checkpoint_every 1000
