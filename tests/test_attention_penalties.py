"""The attention mask's optional loss terms (LossWeights.attention_mask / attention_smoothness)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from batches import make_batch, set_uniform_mask

from affinegan_tf.config import PRESETS, LossWeights, RunConfig
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.losses import mask_mean, total_variation
from affinegan_tf.recipes import resolve_config

ATTENTION = dataclasses.replace(PRESETS["tiny"], output="attention", dropout=0.0)
REPO = Path(__file__).resolve().parents[1]


def attention_model(weights: LossWeights, config=ATTENTION, rate=1e-3) -> AffineGAN:
    model = AffineGAN(config, use_local_discriminator=False, seed=0)
    model.compile(
        keras.optimizers.Adam(rate, beta_1=0.5), keras.optimizers.Adam(rate, beta_1=0.5), weights
    )
    return model


def test_mask_mean_and_total_variation_match_a_hand_computation():
    # One 3x3 mask:      0   1   0
    #                    0   1   0
    #                    0 0.5   0
    mask = np.array([[0, 1, 0], [0, 1, 0], [0, 0.5, 0]], np.float32)[None, :, :, None]
    assert float(mask_mean(mask)) == pytest.approx(2.5 / 9)
    # Vertical pairs (6): |0-0|, |1-1|, |0-0|, |0-0|, |0.5-1|, |0-0| -> 0.5 / 6.
    # Horizontal pairs (6): 1, 1, 1, 1, 0.5, 0.5 -> 5 / 6.
    assert float(total_variation(mask)) == pytest.approx(0.5 / 6 + 5 / 6)
    # A mask that is the same everywhere has none; a second sample averages in.
    flat = np.full_like(mask, 0.3)
    assert float(total_variation(flat)) == 0.0
    both = np.concatenate([mask, flat])
    assert float(total_variation(both)) == pytest.approx((0.5 / 6 + 5 / 6) / 2)
    # ... and inside a graph, as the train step runs them.
    graph_value = tf.function(total_variation)(tf.constant(mask))
    assert float(graph_value) == pytest.approx(0.5 / 6 + 5 / 6)


def test_the_terms_are_off_by_default_and_the_step_does_not_ask_for_masks():
    weights = LossWeights()
    assert weights.attention_mask == 0.0 and weights.attention_smoothness == 0.0
    model = attention_model(weights)
    forward = model._generator_forward(make_batch(ATTENTION), training=False)
    assert forward.fake_masks is None  # the decoder was not asked for them
    logs = model._generator_losses(forward)
    assert "g_attention_mask" not in logs and "g_attention_smoothness" not in logs
    expected = (
        logs["g_global_adversarial"]
        + weights.reconstruction * logs["g_reconstruction"]
        + weights.e0_reconstruction * logs["g_e0_reconstruction"]
        + weights.intensity_adversarial * logs["g_intensity_adversarial"] / ATTENTION.num_targets
    )
    np.testing.assert_allclose(float(logs["g_total"]), float(expected), rtol=1e-6)
    step_logs = model.train_step(make_batch(ATTENTION))
    assert not {"g_attention_mask", "g_attention_smoothness"} & set(step_logs)


def test_a_weighted_term_adds_its_weight_times_the_mask_mean_to_the_total():
    weights = LossWeights(attention_mask=0.5, attention_smoothness=2.0)
    model = attention_model(weights)
    mask_value = set_uniform_mask(model.generator, 0.5)  # 0.731 everywhere
    forward = model._generator_forward(make_batch(ATTENTION), training=False)
    size = ATTENTION.image_size
    assert forward.fake_masks.shape == (ATTENTION.num_targets, size, size, 1)
    logs = model._generator_losses(forward)
    assert float(logs["g_attention_mask"]) == pytest.approx(mask_value, rel=1e-5)
    assert float(logs["g_attention_smoothness"]) == pytest.approx(0.0, abs=1e-6)
    without = (
        logs["g_global_adversarial"]
        + weights.reconstruction * logs["g_reconstruction"]
        + weights.e0_reconstruction * logs["g_e0_reconstruction"]
        + weights.intensity_adversarial * logs["g_intensity_adversarial"] / ATTENTION.num_targets
    )
    np.testing.assert_allclose(float(logs["g_total"]), float(without) + 0.5 * mask_value, rtol=1e-6)


def test_a_compiled_train_step_logs_the_terms_finite_and_they_close_the_mask():
    # A weight that dominates every other term: a few steps must shrink the fakes' masks.
    model = attention_model(LossWeights(attention_mask=1e4, attention_smoothness=1.0), rate=1e-3)
    assert {"g_attention_mask", "g_attention_smoothness"} <= set(model.nonfinite_watch.term_names)
    batch = make_batch(ATTENTION)
    before = float(mask_mean(model._generator_forward(batch, training=False).fake_masks))
    step = tf.function(model.train_step)
    for _ in range(5):
        logs = step(batch)
    for name in ("g_attention_mask", "g_attention_smoothness"):
        assert np.isfinite(float(logs[name])), name
    assert model.nonfinite_watch.first_bad() is None
    after = float(mask_mean(model._generator_forward(batch, training=False).fake_masks))
    assert after < before - 0.05, (before, after)


def test_a_mask_weight_with_image_output_is_refused_naming_the_setting(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('preset = "tiny"\n[train.loss_weights]\nattention_smoothness = 1.0\n')
    with pytest.raises(UserError, match="train.loss_weights.attention_smoothness.*output"):
        resolve_config(str(tmp_path), pipeline=str(recipe))
    # The same recipe with attention output is fine.
    recipe.write_text(
        'preset = "tiny"\n[model]\noutput = "attention"\n'
        "[train.loss_weights]\nattention_smoothness = 1.0\n"
    )
    config = resolve_config(str(tmp_path), pipeline=str(recipe))
    assert config.train.loss_weights.attention_smoothness == 1.0
    # A config.json edited by hand is refused on reading, and compile refuses it too.
    values = config.to_dict()
    values["model"]["output"] = "image"
    with pytest.raises(UserError, match="attention_smoothness"):
        RunConfig.from_dict(values)
    model = AffineGAN(PRESETS["tiny"], use_local_discriminator=False)
    with pytest.raises(UserError, match="train.loss_weights.attention_mask"):
        model.compile(
            keras.optimizers.Adam(), keras.optimizers.Adam(), LossWeights(attention_mask=0.1)
        )
    with pytest.raises(UserError, match="attention_mask must be >= 0"):
        LossWeights(attention_mask=-1.0)


def test_an_override_sets_one_loss_weight_and_keeps_the_recipes_others(tmp_path):
    config = resolve_config(
        str(tmp_path),
        pipeline="toy",
        train_overrides={"loss_weights": {"attention_mask": 0.5}, "steps": 7},
    )
    weights = config.train.loss_weights
    assert weights.attention_mask == 0.5 and config.train.steps == 7
    # The recipe's own weight (D_a's 1, not the paper's 100) stays; the rest are the paper's.
    assert weights == dataclasses.replace(
        LossWeights(), attention_mask=0.5, intensity_adversarial=1.0
    )
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'preset = "tiny"\n[model]\noutput = "attention"\n'
        "[train.loss_weights]\nreconstruction = 30.0\n"
    )
    weights = resolve_config(
        str(tmp_path),
        pipeline=str(recipe),
        train_overrides={"loss_weights": {"attention_smoothness": 2.0}},
    ).train.loss_weights
    assert (weights.reconstruction, weights.attention_smoothness) == (30.0, 2.0)
    with pytest.raises(UserError, match="attention_mak"):
        resolve_config(
            str(tmp_path), pipeline="toy", train_overrides={"loss_weights": {"attention_mak": 1}}
        )


def test_demo_levers_set_reaches_a_loss_weight():
    spec = importlib.util.spec_from_file_location(
        "demo_levers", REPO / "benchmarks" / "demo_levers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sections = module._overrides(
        [
            "train.loss_weights.attention_mask=0.5",
            "train.loss_weights.attention_smoothness=2",
            "model.upsample=resize",
            "train.batch_size=4",
        ]
    )
    assert sections == {
        "model": {"upsample": "resize"},
        "train": {
            "loss_weights": {"attention_mask": 0.5, "attention_smoothness": 2},
            "batch_size": 4,
        },
        "data": {},
    }
    for bad in ("train.=1", "train.loss_weights.=1", "loss.x=1", "train.steps"):
        with pytest.raises(SystemExit):
            module._overrides([bad])


def test_the_speed_probe_times_the_variant_as_configured(tmp_path):
    """The probe runs on random data without masks: "auto" must be timed with the mouth D (the
    toy set has masks), an explicit "off" without it (it trains more steps in its minutes)."""
    from affinegan_tf.speed import config_for_masked_data

    for given, timed in (("auto", "on"), ("on", "on"), ("off", "off")):
        config = resolve_config(
            str(tmp_path), pipeline="toy", model_overrides={"local_discriminator": given}
        )
        assert config_for_masked_data(config).model.local_discriminator == timed
