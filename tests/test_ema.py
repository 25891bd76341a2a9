"""The generator's weight average (ema.py): the formula, what it leaves alone, checkpoints, loading.

Resuming a run with an average bit for bit, the `fit --ema-decay` flag and config.json are tested
by test_training.py's SIGTERM test; tf.distribute by test_distributed.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from batches import make_batch

from affinegan_tf.checkpoints import TrainingCheckpoint, load_model
from affinegan_tf.config import PRESETS, LossWeights, RunConfig, TrainConfig
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.recipes import resolve_config
from affinegan_tf.run_folder import CONFIG_FILE

TINY = PRESETS["tiny"]
DECAY = 0.9


def compiled_model(ema_decay=DECAY):
    model = AffineGAN(TINY, use_local_discriminator=False, seed=0, ema_decay=ema_decay)
    # Named: the checkpoint keys of optimiser variables contain the optimiser's name.
    model.compile(
        keras.optimizers.Adam(1e-3, beta_1=0.5, name="generator_adam"),
        keras.optimizers.Adam(1e-3, beta_1=0.5, name="discriminator_adam"),
        LossWeights(),
    )
    return model


def values(variables):
    return [np.array(variable.numpy()) for variable in variables]


def averaged(model):
    """(average, generator) values of the averaged weights, pair by pair."""
    pairs = model.weight_average.pairs
    return values([average for average, _ in pairs]), values([source for _, source in pairs])


def train(model, steps):
    step = tf.function(model.train_step)
    for index in range(steps):
        step(make_batch(TINY, seed=index))


def test_the_average_follows_the_formula_with_its_warm_up():
    model = compiled_model()
    average, weights = averaged(model)
    assert len(average) == len(model.generator.trainable_variables)
    for a, w in zip(average, weights, strict=True):
        np.testing.assert_array_equal(a, w)  # starts at the generator's weights
    step = tf.function(model.train_step)
    for done in range(3):
        step(make_batch(TINY, seed=done))
        decay = np.float32(min(DECAY, (1 + done) / (10 + done)))  # 0.1, 2/11, 0.25
        previous = average
        average, weights = averaged(model)
        moved = 0.0
        for old, new, w in zip(previous, average, weights, strict=True):
            np.testing.assert_allclose(new, decay * old + (1 - decay) * w, rtol=1e-5, atol=1e-7)
            moved = max(moved, float(np.abs(new - w).max()))
        assert moved > 1e-6  # the average really lags the weights
    # Not trainable: neither Keras nor the optimisers see it.
    trainable = {id(variable) for variable in model.trainable_variables}
    trainable |= {id(variable) for variable in model.generator_variables}
    assert not trainable & {id(variable) for variable in model.generator_ema.variables}
    assert model.inference_generator is model.generator_ema
    assert model.inference_estimator.generator is model.generator_ema
    assert model.intensity_estimator.generator is model.generator


def test_without_an_average_nothing_is_built_and_the_weights_train_as_with_one():
    off, on = compiled_model(ema_decay=0.0), compiled_model()
    assert off.generator_ema is None and off.weight_average is None
    assert off.inference_generator is off.generator
    assert len(on.variables) == len(off.variables) + len(on.generator_ema.variables)
    assert len(on.generator_optimizer.variables) == len(off.generator_optimizer.variables)
    train(off, 2)
    train(on, 2)
    averages = {id(variable) for variable in on.generator_ema.variables}
    trained_on = [v for v in on.variables if id(v) not in averages]
    for a, b in zip(values(off.variables), values(trained_on), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # three short fits: ~25 s
def test_checkpoints_keep_the_average_and_old_ones_start_it_at_the_generator(tmp_path):
    model = compiled_model()
    train(model, 2)
    TrainingCheckpoint(model, tmp_path / "run").save()
    restored = compiled_model()
    assert TrainingCheckpoint(restored, tmp_path / "run").restore_latest() == 2
    for a, b in zip(values(model.variables), values(restored.variables), strict=True):
        np.testing.assert_array_equal(a, b)

    # A checkpoint written without an average (EMA off) into a model that keeps one.
    old = compiled_model(ema_decay=0.0)
    train(old, 2)
    TrainingCheckpoint(old, tmp_path / "old").save()
    upgraded = compiled_model()
    assert TrainingCheckpoint(upgraded, tmp_path / "old").restore_latest() == 2
    average, weights = averaged(upgraded)
    saved = values(old.generator.trainable_variables)
    for a, w, trained in zip(average, weights, saved, strict=True):
        np.testing.assert_array_equal(w, trained)
        np.testing.assert_array_equal(a, w)


def write_run(run_dir, model, ema_decay):
    TrainingCheckpoint(model, run_dir).save()
    config = RunConfig(model=TINY, train=TrainConfig(ema_decay=ema_decay), preset="tiny")
    (run_dir / CONFIG_FILE).write_text(config.to_json())


@pytest.mark.slow  # a fit and a load: ~25 s
def test_load_model_generates_with_the_average(tmp_path):
    model = compiled_model()
    train(model, 2)
    write_run(tmp_path / "run", model, DECAY)
    loaded, config = load_model(tmp_path / "run")
    assert config.train.ema_decay == DECAY
    assert loaded.inference_generator is loaded.generator_ema
    saved_average, saved_weights = averaged(model)
    loaded_average = values([average for average, _ in loaded.weight_average.pairs])
    assert any(not np.array_equal(a, w) for a, w in zip(saved_average, saved_weights, strict=True))
    for a, b in zip(saved_average, loaded_average, strict=True):
        np.testing.assert_array_equal(a, b)
    # Intensities are read off the average's encoders.
    face = np.random.default_rng(0).uniform(-1, 1, (3, TINY.image_size, TINY.image_size, 3))
    face = tf.constant(face, tf.float32)
    expected = loaded.intensity_estimator.bound_to(model.generator_ema).from_images(
        face[:1], face[1:]
    )
    np.testing.assert_allclose(loaded.infer_intensities(face[:1], face[1:]), expected, rtol=1e-6)

    # An old run folder (no average saved) whose config now asks for one.
    old = compiled_model(ema_decay=0.0)
    train(old, 1)
    write_run(tmp_path / "old", old, DECAY)
    loaded, _ = load_model(tmp_path / "old")
    for a, w in zip(*averaged(loaded), strict=True):
        np.testing.assert_array_equal(a, w)
    for a, w in zip(averaged(loaded)[1], values(old.generator.trainable_variables), strict=True):
        np.testing.assert_array_equal(a, w)


def test_recipes_set_the_decay_and_bad_values_are_refused(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('preset = "tiny"\n[train]\nema_decay = 0.999\n')
    assert resolve_config(str(tmp_path), pipeline=str(recipe)).train.ema_decay == 0.999
    flagged = resolve_config(
        str(tmp_path), pipeline=str(recipe), train_overrides={"ema_decay": 0.5}
    )
    assert flagged.train.ema_decay == 0.5  # the flag wins over the recipe
    assert resolve_config(str(tmp_path), preset_name="tiny").train.ema_decay == 0.0
    for bad in (1.0, -0.1):
        with pytest.raises(UserError, match="ema_decay"):
            TrainConfig(ema_decay=bad)
