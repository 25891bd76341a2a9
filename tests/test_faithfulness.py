"""The details the authors' code fixes and the review of issue 12 found: each one pinned here.

Initialisation, the noise on the reconstructions, the neutral frame's own mask in the local D,
Adam's epsilon, the learning-rate schedule, the own step counter, compile without a Keras
optimiser, no global seed reset, and the learning rate kept continuous (or refused) on resume.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from batches import make_batch

from affinegan_tf.checkpoints import (
    OPTIONAL_KEYS,
    TrainingCheckpoint,
    _tracked,
    load_model,
)
from affinegan_tf.config import PRESETS, RunConfig, TrainConfig
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.intensity import infer_intensity
from affinegan_tf.losses import generator_adversarial_loss
from affinegan_tf.optimizers import ConstantThenLinearDecay, make_optimizers, schedule_of

REPO = Path(__file__).resolve().parents[1]
# Small and without dropout unless a test needs it: the comparisons below are exact.
SMALL = dataclasses.replace(PRESETS["tiny"], image_size=32, ngf=8, ndf=8)


def compiled(config=SMALL, local=True, total_steps=100, **train):
    model = AffineGAN(config, use_local_discriminator=local, seed=0)
    model.compile(*make_optimizers(TrainConfig(**train), total_steps))
    return model


def test_every_conv_and_dense_starts_normal_002_with_zero_bias():
    config = dataclasses.replace(SMALL, intensity="mlp")
    model = AffineGAN(config, use_local_discriminator=True, seed=0)
    model.build()
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(
            layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense)
        )
    ]
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == 5  # D_a's three and the regressor's two
    for layer in layers:
        initializer = layer.kernel_initializer
        assert isinstance(initializer, keras.initializers.RandomNormal), layer.path
        assert (initializer.mean, initializer.stddev) == (0.0, 0.02), layer.path
        assert not np.any(layer.bias.numpy()), layer.path
    kernels = np.concatenate([layer.kernel.numpy().ravel() for layer in layers])
    assert abs(kernels.mean()) < 1e-3 and kernels.std() == pytest.approx(0.02, rel=0.02)
    # D_a's kernels too, not glorot's (whose std for 5 x 5 would be ~0.45).
    da = np.concatenate([layer.kernel.numpy().ravel() for layer in dense[:3]])
    assert np.abs(da).max() < 0.1


def test_reconstructions_get_the_training_noise():
    config = dataclasses.replace(SMALL, dropout=0.0)
    model = compiled(config)
    batch = make_batch(config)
    evaluation = model._generator_forward(batch, training=False).reconstructions.numpy()
    first = model._generator_forward(batch, training=True).reconstructions.numpy()
    second = model._generator_forward(batch, training=True).reconstructions.numpy()
    assert np.abs(first - evaluation).max() > 1e-4  # noise, since dropout is off
    assert np.abs(first - second).max() > 1e-4  # fresh noise each step
    quiet = compiled(dataclasses.replace(config, noise_std=0.0))
    np.testing.assert_allclose(
        quiet._generator_forward(batch, training=True).reconstructions.numpy(),
        quiet._generator_forward(batch, training=False).reconstructions.numpy(),
        atol=1e-6,
    )


def test_local_discriminator_masks_the_neutral_frame_with_its_own_mask():
    model = compiled()
    batch = make_batch(SMALL, batch_size=2)
    forward = model._generator_forward(batch, training=False)
    logs = model._generator_losses(forward)
    repeats = SMALL.num_targets
    neutral = tf.repeat(batch["neutral"], repeats, axis=0)
    neutral_mask = tf.repeat(batch["neutral_mask"], repeats, axis=0)

    def local_loss(neutral_masked):
        pairs = tf.concat([neutral_masked, forward.fakes * forward.masks], axis=-1)
        return float(generator_adversarial_loss(model.local_discriminator(pairs)))

    own = local_loss(neutral * neutral_mask)
    targets_mask = local_loss(neutral * forward.masks)  # what the code did before
    assert float(logs["g_local_adversarial"]) == pytest.approx(own, rel=1e-5)
    assert abs(own - targets_mask) > 1e-4  # the test tells the two apart


def test_adam_has_pytorchs_epsilon_and_loss_scaling_under_mixed_precision():
    generator, discriminator = make_optimizers(TrainConfig(), 100)
    for optimizer in (generator, discriminator):
        assert optimizer.epsilon == 1e-8
        assert (optimizer.beta_1, optimizer.beta_2) == (0.5, 0.999)
    assert generator.name != discriminator.name
    scaled, _ = make_optimizers(TrainConfig(mixed_precision=True), 100)
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert scaled.inner_optimizer.epsilon == 1e-8
    assert schedule_of(scaled).total_steps == 100


def test_the_fused_adam_update_is_kerass_adam():
    """FusedAdam (one ResourceApplyAdam per variable) against Keras's Adam over 30 steps of a
    moving schedule. (Under a strategy FusedAdam runs Keras's own update: test_distributed's
    MirroredStrategy and test_multi_worker's runs train through that path.)"""
    from affinegan_tf.optimizers import FusedAdam

    rng = np.random.default_rng(3)
    start = rng.normal(size=(16, 9)).astype(np.float32)
    gradients = [rng.normal(size=start.shape).astype(np.float32) for _ in range(30)]

    def train(optimizer_class):
        variable = keras.Variable(start.copy())
        optimizer = optimizer_class(
            ConstantThenLinearDecay(1e-2, 30, 10), beta_1=0.5, beta_2=0.999, epsilon=1e-8
        )
        step = tf.function(lambda gradient: optimizer.apply([gradient], [variable]))
        for gradient in gradients:
            step(tf.constant(gradient))
        return variable.numpy()

    keras_result, fused_result = train(keras.optimizers.Adam), train(FusedAdam)
    assert np.abs(keras_result - start).max() > 0.05
    np.testing.assert_allclose(fused_result, keras_result, atol=2e-6)
    generator, _ = make_optimizers(TrainConfig(), 100)
    assert isinstance(generator, FusedAdam)


def test_schedule_tail_in_epochs_steps_or_fraction():
    # The authors' default: 10,000 constant epochs then 100 of linear decay.
    authors = TrainConfig(epochs=10_100, decay_epochs=100)
    steps_per_epoch = 7
    tail = authors.decay_steps_of(10_100 * steps_per_epoch)
    assert tail == 100 * steps_per_epoch
    rates = ConstantThenLinearDecay(2e-4, 70_700, tail)
    assert rates.rate_at(70_000) == 2e-4 and rates.rate_at(70_350) == pytest.approx(1e-4)
    # With --steps instead of epochs, the tail keeps its share of the run.
    assert TrainConfig(epochs=400, decay_epochs=100, steps=1000).decay_steps_of(1000) == 250
    assert TrainConfig(decay_steps=30).decay_steps_of(1000) == 30
    assert TrainConfig(decay_fraction=0.3).decay_steps_of(1000) == 300
    assert TrainConfig(epochs=10, decay_epochs=50).decay_steps_of(70) == 70  # whole run
    with pytest.raises(UserError, match="not both"):
        TrainConfig(decay_epochs=1, decay_steps=1)


@pytest.mark.parametrize("name", ["ck_mixed", "cheeks_eyes"])
def test_paper_recipes_state_epochs_and_tail(name):
    from affinegan_tf.recipes import load_pipeline

    train = load_pipeline(REPO / "pipelines" / f"{name}.toml")["train"]
    assert train["epochs"] > train["decay_epochs"] > 0
    config = TrainConfig(**train)
    assert config.decay_steps_of(config.epochs * 3) == train["decay_epochs"] * 3


def test_step_is_our_own_counter_that_loss_scaling_skips_do_not_stop():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = AffineGAN(SMALL, use_local_discriminator=False, seed=0)
        # A loss scale that overflows float16 gradients: the first steps are skipped.
        model.compile(
            keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=2.0**40),
            keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3)),
        )
        step = tf.function(model.train_step)
        batch = make_batch(SMALL)
        for _ in range(3):
            step(batch)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert int(model.step.numpy()) == 3
    assert int(model.generator_optimizer.iterations.numpy()) < 3


def test_compile_gives_keras_no_optimizer_of_its_own():
    model = compiled()
    assert model.optimizer is None
    keras_variables = {id(v) for v in model.generator_optimizer.variables}
    keras_variables |= {id(v) for v in model.discriminator_optimizer.variables}
    assert len(keras_variables) == len(model.generator_optimizer.variables) + len(
        model.discriminator_optimizer.variables
    )


def test_building_a_model_leaves_the_global_random_state_alone():
    random.seed(11)
    np.random.seed(11)
    tf.random.set_seed(11)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    expected = tf.random.uniform([4]).numpy()
    tf.random.set_seed(11)
    first = AffineGAN(SMALL, use_local_discriminator=True, seed=3)
    first.build()
    assert random.getstate() == python_state
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )
    np.testing.assert_array_equal(tf.random.uniform([4]).numpy(), expected)
    # The weights still depend on the model's seed only.
    random.seed(99)
    second = AffineGAN(SMALL, use_local_discriminator=True, seed=3)
    second.build()
    other = AffineGAN(SMALL, use_local_discriminator=True, seed=4)
    other.build()
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(
        first.generator.weights[0].numpy(), other.generator.weights[0].numpy()
    )


def test_authors_intensity_formula_divides_by_the_norm():
    rng = np.random.default_rng(0)
    neutral, target, delta = (rng.normal(size=(3, 1, 1, 16)).astype(np.float32) for _ in range(3))
    projection = np.abs(np.sum((target - neutral) * delta, axis=(1, 2, 3)))
    norm = np.sqrt(np.sum(delta * delta, axis=(1, 2, 3)))
    np.testing.assert_allclose(
        infer_intensity(neutral, target, delta, formula="authors_code"),
        projection / (norm + 1e-6),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        infer_intensity(neutral, target, delta), projection / (norm**2 + 1e-8), rtol=1e-5
    )
    with pytest.raises(UserError, match="intensity_formula"):
        dataclasses.replace(SMALL, intensity_formula="code")
    # The model uses its config's formula.
    images = tf.constant(rng.uniform(-1, 1, (3, 32, 32, 3)), tf.float32)
    paper = AffineGAN(SMALL, False, seed=0)
    authors = AffineGAN(dataclasses.replace(SMALL, intensity_formula="authors_code"), False, 0)
    paper.build()
    authors.build()
    delta_bottleneck = paper.generator.delta_encoder(images[:1])[-1].numpy()
    norm = float(np.sqrt(np.sum(delta_bottleneck**2)))
    np.testing.assert_allclose(
        authors.infer_intensities(images[:1], images[1:]).numpy() / norm,
        paper.infer_intensities(images[:1], images[1:]).numpy(),
        rtol=1e-4,
    )


def test_fit_takes_the_intensity_formula_flag(tmp_path):
    from affinegan_tf.cli import build_parser
    from affinegan_tf.recipes import resolve_config

    args = build_parser().parse_args(
        ["fit", "--data", str(tmp_path), "--intensity-formula", "authors_code"]
    )
    assert args.intensity_formula == "authors_code"
    config = resolve_config(str(tmp_path), model_overrides={"intensity_formula": "authors_code"})
    assert config.model.intensity_formula == "authors_code"
    assert resolve_config(str(tmp_path)).model.intensity_formula == "paper"


# ----------------------------------------------------------------------------- checkpoints


def write_run(run_dir: Path, model, config=None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = config or RunConfig(model=dataclasses.replace(SMALL, local_discriminator="on"))
    (run_dir / "config.json").write_text(config.to_json())


def test_a_checkpoint_without_the_new_keys_still_loads_and_resumes(tmp_path):
    """As written before the own step counter: the model, both optimisers, nothing else."""
    model = compiled()
    step = tf.function(model.train_step)
    batch = make_batch(SMALL)
    for _ in range(2):
        step(batch)
    tracked = _tracked(model.variables, "model")
    tracked.update(_tracked(model.generator_optimizer.variables, "generator_optimizer"))
    tracked.update(_tracked(model.discriminator_optimizer.variables, "discriminator_optimizer"))
    old = {key: value for key, value in tracked.items() if key not in OPTIONAL_KEYS}
    assert len(old) == len(tracked) - 1  # the step counter was new
    run_dir = tmp_path / "run"
    write_run(run_dir, model)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(**old), str(run_dir / "checkpoints"), 3
    )
    manager.save(checkpoint_number=2)

    resumed = compiled()
    assert TrainingCheckpoint(resumed, run_dir).restore_latest() == 2
    for a, b in zip(model.generator.weights, resumed.generator.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loaded, _ = load_model(run_dir)
    assert int(loaded.step.numpy()) == 2


def test_changing_the_run_length_on_resume_never_makes_the_rate_jump(tmp_path):
    run_dir = tmp_path / "run"
    model = compiled(total_steps=100, decay_steps=20)
    write_run(run_dir, model)
    saver = TrainingCheckpoint(model, run_dir)

    def resume(total_steps, allow=False):
        other = compiled(total_steps=total_steps, decay_steps=20)
        return TrainingCheckpoint(other, run_dir).restore_latest(allow_schedule_change=allow)

    model.step.assign(50)  # constant part of both schedules: any length is fine
    saver.save()
    assert resume(200) == 50 and resume(75) == 50
    model.step.assign(90)  # inside the decay: the rate is 1e-4 of 2e-4
    saver.save()
    assert resume(100) == 90
    with pytest.raises(UserError, match=r"jump from 0\.0001 to 0\.0002.*--force"):
        resume(200)
    assert resume(200, allow=True) == 90


@pytest.mark.slow
def test_a_checkpoint_written_by_the_original_code_resumes(tmp_path, toy_data):
    """A real run of commit 32d527e (before this change), resumed and loaded by this code."""
    import io
    import os
    import subprocess
    import sys
    import tarfile

    original = "32d527e"
    probe = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{original}^{{commit}}"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"commit {original} is not in this checkout's history")
    # The original package, unpacked from git (no worktree: the repository is left untouched).
    tree = tmp_path / "original"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", original, "affinegan_tf", "pipelines"],
        check=True,
        capture_output=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        # Our own repository's files; the "data" filter where this Python has it.
        tar.extractall(tree, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    run_dir = tmp_path / "run"
    environment = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    arguments = ["fit", "--data", str(toy_data), "--out", str(run_dir), "--preset", "tiny"]
    subprocess.run(
        [sys.executable, "-m", "affinegan_tf", *arguments, "--steps", "2"],
        check=True,
        capture_output=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )
    assert int(load_model(run_dir)[0].step.numpy()) == 2
    from affinegan_tf.recipes import resolve_config
    from affinegan_tf.training import fit

    config = resolve_config(str(toy_data), preset_name="tiny", train_overrides={"steps": 3})
    assert fit(config, run_dir).step == 3
