"""Each ablation switch trains a few steps through training.fit and changes what it should."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from affinegan_tf.config import RunConfig
from affinegan_tf.errors import UserError
from affinegan_tf.evaluation.ablations import VARIANTS, fresh_names, variant_config

STEPS = 2


@pytest.fixture(scope="module")
def small_toy(tmp_path_factory):
    """Two short training videos (4 frames each): enough for a few steps."""
    from affinegan_tf.toy import write_toy_dataset

    root = tmp_path_factory.mktemp("ablation_toy")
    write_toy_dataset(root, num_videos=2, size=64, frames_per_video=4, test_videos=1, seed=1)
    return root


@pytest.fixture(scope="module")
def trained(small_toy, tmp_path_factory):
    """name -> (run folder, FitResult, model at the last step, checkpoint prefixes)."""
    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.training import fit

    runs = {}
    for name in VARIANTS:
        config = variant_config(name, small_toy, steps=STEPS)
        # No mouth D: a faster step, and the switches under test do not involve it.
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, local_discriminator="off")
        )
        assert config.train.checkpoint_every == 1
        run_dir = tmp_path_factory.mktemp(name) / "run"
        fresh_names()
        result = fit(config, run_dir)
        fresh_names()
        model, _ = load_model(run_dir)
        prefixes = tf.train.get_checkpoint_state(str(run_dir / "checkpoints"))
        runs[name] = (run_dir, result, model, list(prefixes.all_model_checkpoint_paths))
    return runs


def weights_named(prefix: str, fragment: str) -> dict[str, np.ndarray]:
    """Model variables of a checkpoint whose key contains `fragment`."""
    reader = tf.train.load_checkpoint(prefix)
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key.startswith("model__") and fragment in key
    }


def changed_between_first_and_last(prefixes: list[str], fragment: str) -> bool:
    first, last = weights_named(prefixes[0], fragment), weights_named(prefixes[-1], fragment)
    assert first and first.keys() == last.keys()
    return any(not np.array_equal(first[key], last[key]) for key in first)


def sample_batch(small_toy, model):
    from affinegan_tf.config import DataConfig
    from affinegan_tf.data.pipeline import load_training_set, make_dataset

    config = model.config
    training_set = load_training_set(DataConfig(data_dir=str(small_toy)), config.load_size)
    dataset = make_dataset(
        training_set, config.image_size, config.load_size, config.num_targets, 2, seed=5
    )
    return next(iter(dataset))


@pytest.mark.slow  # shares a fixture that trains four variants: ~60 s
def test_every_variant_trains_with_its_switches_in_the_saved_config(trained):
    for name, (run_dir, result, model, prefixes) in trained.items():
        assert result.step == STEPS and len(prefixes) == STEPS
        saved = RunConfig.load(run_dir / "config.json").model
        for config in (saved, model.config):
            assert config.intensity == VARIANTS[name]["intensity"]
            assert config.intensity_discriminator == VARIANTS[name]["intensity_discriminator"]


@pytest.mark.slow  # shares a fixture that trains four variants: ~60 s
def test_affine_uses_the_projection_and_trains_the_intensity_discriminator(trained, small_toy):
    from affinegan_tf.intensity import infer_intensity

    _, result, model, prefixes = trained["affine"]
    assert model.intensity_discriminator is not None and model.intensity_regressor is None
    assert "d_intensity" in result.logs and "g_intensity_adversarial" in result.logs
    assert changed_between_first_and_last(prefixes, "intensity_discriminator")
    batch = sample_batch(small_toy, model)
    forward = model._generator_forward(batch, training=False)
    neutral = batch["neutral"][:1]
    targets = batch["targets"][0]
    base = model.generator.base_encoder(tf.concat([neutral, targets], 0))[-1]
    delta = model.generator.delta_encoder(neutral)[-1]
    count = targets.shape[0]
    expected = infer_intensity(tf.repeat(base[:1], count, 0), base[1:], tf.repeat(delta, count, 0))
    np.testing.assert_allclose(forward.intensities[0], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # shares a fixture that trains four variants: ~60 s
def test_mlp_regresses_intensity_with_a_network_whose_weights_train(trained, small_toy):
    from affinegan_tf.evaluation.curves import infer_frame_intensities
    from affinegan_tf.intensity import infer_intensity

    _, result, model, prefixes = trained["mlp"]
    assert model.intensity_regressor is not None
    assert model.intensity_regressor.trainable_variables
    assert changed_between_first_and_last(prefixes, "intensity_regressor")
    batch = sample_batch(small_toy, model)
    neutral, targets = batch["neutral"][:1], batch["targets"][0]
    count = targets.shape[0]
    base_neutral = model.generator.base_encoder(neutral)[-1]
    base_targets = model.generator.base_encoder(targets)[-1]
    regressed = model.intensity_regressor(tf.repeat(base_neutral, count, 0), base_targets)
    np.testing.assert_allclose(
        model.infer_intensities(neutral, targets), regressed, rtol=1e-4, atol=1e-6
    )
    delta = model.generator.delta_encoder(neutral)[-1]
    projected = infer_intensity(
        tf.repeat(base_neutral, count, 0), base_targets, tf.repeat(delta, count, 0)
    )
    assert not np.allclose(regressed, projected)  # not the affine projection
    # The evaluation tools read intensities through the regressor.
    frames = ((targets.numpy() + 1) * 127.5).round().astype(np.uint8)
    inferred = infer_frame_intensities(model, frames[0], frames)
    assert inferred.shape == (count,) and np.isfinite(inferred).all()


@pytest.mark.slow  # shares a fixture that trains four variants: ~60 s
def test_temporal_uses_frame_positions_and_has_no_intensity_estimator(trained, small_toy):
    from affinegan_tf.evaluation.curves import infer_frame_intensities
    from affinegan_tf.evaluation.scoring import evaluate_video

    _, result, model, prefixes = trained["temporal"]
    assert model.intensity_discriminator is None and model.intensity_regressor is None
    assert "d_intensity" not in result.logs
    assert not weights_named(prefixes[-1], "intensity_discriminator")
    batch = sample_batch(small_toy, model)
    forward = model._generator_forward(batch, training=False)
    np.testing.assert_allclose(forward.intensities, batch["target_positions"])
    frames = np.stack([np.full((64, 64, 3), value, np.uint8) for value in (0, 80, 160, 240)])
    with pytest.raises(UserError, match="temporal"):
        infer_frame_intensities(model, frames[0], frames)
    # Evaluation generates a temporal model's videos at its training labels t / (T - 1).
    result = evaluate_video(model, "flat", frames)
    assert result.intensities == pytest.approx([0, 1 / 3, 2 / 3, 1])


@pytest.mark.slow  # shares a fixture that trains four variants: ~60 s
def test_no_intensity_discriminator_leaves_no_d_a_variables(trained):
    run_dir, result, model, prefixes = trained["affine_no_da"]
    assert model.intensity_discriminator is None and model.intensity_regressor is None
    assert not [v for v in model.variables if "intensity_discriminator" in v.path]
    assert not weights_named(prefixes[-1], "intensity_discriminator")
    assert "d_intensity" not in result.logs and "g_intensity_adversarial" not in result.logs
    # The affine variant of the same run does have them.
    assert weights_named(trained["affine"][3][-1], "intensity_discriminator")


def test_unknown_variant_is_a_user_error(small_toy):
    with pytest.raises(UserError, match="affine_no_da"):
        variant_config("fan", small_toy, steps=1)
