"""Networks, intensity inference, the affine combine and what each training phase updates."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from batches import make_batch, set_uniform_mask

from affinegan_tf.config import PRESETS, LossWeights, RunConfig
from affinegan_tf.gan import AffineGAN
from affinegan_tf.intensity import infer_intensity
from affinegan_tf.layers import InstanceNorm, NormalisedConv2D, NormalisedConv2DTranspose
from affinegan_tf.networks import AffineGenerator, PatchDiscriminator, count_parameters

TINY = PRESETS["tiny"]


def compiled_model(config=TINY, local=True, generator_rate=1e-3, discriminator_rate=1e-3):
    model = AffineGAN(config, use_local_discriminator=local, seed=0)
    model.compile(
        keras.optimizers.Adam(generator_rate, beta_1=0.5),
        keras.optimizers.Adam(discriminator_rate, beta_1=0.5),
        LossWeights(),
    )
    return model


def snapshot(variables):
    return [np.array(variable.numpy()) for variable in variables]


def changed(before, variables):
    return [
        not np.array_equal(old, new.numpy()) for old, new in zip(before, variables, strict=True)
    ]


def is_dead_bias(model, variable):
    """A bias of a conv whose output goes straight into instance norm (kept, not added)."""
    return any(
        variable is layer.bias
        for layer in model._flatten_layers()
        if isinstance(layer, NormalisedConv2D | NormalisedConv2DTranspose)
    )


def test_paper_parameter_counts_match_the_authors_model():
    generator = AffineGenerator(PRESETS["paper"])
    generator.build()
    # AFFINEGAN.md: encoders ~19.54 M each, decoder ~34.87 M (the exact pix2pix counts).
    for encoder in (generator.base_encoder, generator.delta_encoder):
        assert count_parameters(encoder) == pytest.approx(19.54e6, rel=0.005)
        assert count_parameters(encoder) == 19_535_808
    assert count_parameters(generator.decoder) == pytest.approx(34.87e6, rel=0.005)
    assert count_parameters(generator.decoder) == 34_873_795
    discriminator = PatchDiscriminator(64)
    logits = discriminator(tf.zeros((1, 256, 256, 6)))
    assert logits.shape == (1, 30, 30, 1)  # 70x70 PatchGAN on 256x256
    assert count_parameters(discriminator) == 2_767_809


@pytest.mark.parametrize("name", ["tiny", "small", "mobile"])
def test_every_preset_maps_images_to_images_with_a_1x1_bottleneck(name):
    config = PRESETS[name]
    generator = AffineGenerator(config)
    images = tf.zeros((2, config.image_size, config.image_size, 3))
    base, delta = generator.encode(images)
    assert len(base) == len(delta) == config.levels
    assert base[-1].shape == (2, 1, 1, config.encoder_channels()[-1])
    output = generator.decode(base, delta, tf.constant([0.0, 1.0]))
    assert output.shape == images.shape
    assert float(tf.reduce_max(tf.abs(output))) <= 1.0  # tanh


def test_mobile_preset_has_no_transposed_convolutions():
    generator = AffineGenerator(PRESETS["mobile"])
    generator.build()
    kinds = {type(layer).__name__ for layer in generator.decoder._flatten_layers()}
    assert "Conv2DTranspose" not in kinds
    # Not UpSampling2D either (it lowers to 5-D Tile): a nearest resize doubles each level.
    assert "UpSampling2D" not in kinds
    layers = generator.decoder._flatten_layers()
    blocks = [layer for layer in layers if type(layer).__name__ == "UpBlock"]
    assert len(blocks) == 8 and all(block.resize for block in blocks)


def test_dropout_blocks_follow_pix2pix_rule():
    assert PRESETS["paper"].dropout_blocks == 3
    assert TINY.dropout_blocks == 1
    generator = AffineGenerator(PRESETS["paper"])
    with_dropout = [block.name for block in generator.decoder.blocks if block.dropout]
    assert with_dropout == ["up_6", "up_5", "up_4"]  # the three right after the innermost


def test_instance_norm_normalises_each_sample_and_channel():
    values = tf.random.normal((3, 8, 8, 4), mean=5.0, stddev=3.0, seed=1)
    normalised = InstanceNorm()(values).numpy()
    np.testing.assert_allclose(normalised.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=(1, 2)), 1.0, atol=1e-3)
    assert InstanceNorm().weights == []  # no learned scale/offset


def test_intensity_is_the_least_squares_coefficient():
    direction = np.array([[1.0, 2.0, 0.0, -1.0]], np.float32)
    neutral = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
    target = neutral - 0.3 * direction  # 0.3 along -direction: |coefficient| = 0.3
    value = infer_intensity(neutral, target, direction).numpy()
    np.testing.assert_allclose(value, [0.3], rtol=1e-5)


def test_intensity_inference_is_per_sample():
    model = compiled_model(local=False)
    batch = make_batch(TINY, batch_size=2)
    together = model._generator_forward(batch, training=False).intensities.numpy()
    apart = [
        model._generator_forward(
            {key: value[index : index + 1] for key, value in batch.items()}, training=False
        ).intensities.numpy()
        for index in range(2)
    ]
    np.testing.assert_allclose(together, np.concatenate(apart), rtol=1e-4, atol=1e-6)
    assert not np.allclose(together[0], together[1])


def test_at_zero_intensity_the_output_does_not_depend_on_the_delta_encoder():
    generator = AffineGenerator(dataclasses.replace(TINY, dropout=0.0))
    face = tf.random.uniform((1, 64, 64, 3), -1, 1, seed=3)
    before_zero = generator(((face), tf.constant([0.0]))).numpy()
    before_one = generator((face, tf.constant([1.0]))).numpy()
    for weight in generator.delta_encoder.weights:
        weight.assign(weight + tf.random.normal(weight.shape, stddev=0.5, seed=4))
    np.testing.assert_allclose(
        generator((face, tf.constant([0.0]))).numpy(), before_zero, atol=1e-6
    )
    assert np.abs(generator((face, tf.constant([1.0]))).numpy() - before_one).max() > 1e-3
    # ... and the combine is applied at every level, not only the bottleneck.
    base, delta = generator.encode(face)
    combined = generator.combine(base, delta, tf.constant([0.5]))
    for level, (b, d, c) in enumerate(zip(base, delta, combined, strict=True)):
        np.testing.assert_allclose(c.numpy(), (b + 0.5 * d).numpy(), atol=1e-6, err_msg=level)


def test_noise_and_dropout_only_when_training():
    generator = AffineGenerator(TINY)
    face = tf.random.uniform((1, 64, 64, 3), -1, 1, seed=5)
    intensities = tf.constant([0.7])
    first = generator((face, intensities), training=False).numpy()
    np.testing.assert_array_equal(first, generator((face, intensities), training=False).numpy())
    assert not np.array_equal(first, generator((face, intensities), training=True).numpy())


def test_discriminator_step_changes_only_discriminator_variables():
    model = compiled_model(local=True)
    batch = make_batch(TINY)
    generator_before = snapshot(model.generator_variables)
    discriminator_before = snapshot(model.discriminator_variables)
    forward = model._generator_forward(batch)
    model._discriminator_step(batch, forward)
    assert not any(changed(generator_before, model.generator_variables))
    moved = changed(discriminator_before, model.discriminator_variables)
    # The biases of convs feeding instance norm are kept but never used (their gradient is 0).
    dead = [is_dead_bias(model, variable) for variable in model.discriminator_variables]
    assert all(move != is_dead for move, is_dead in zip(moved, dead, strict=True))
    assert sum(dead) == 6  # conv_1..3 of the global and the local PatchGAN


def test_generator_update_touches_only_generator_variables():
    # With the discriminator's learning rate at 0 nothing may move the discriminators: the
    # generator update must not include their variables.
    model = compiled_model(local=True, discriminator_rate=0.0)
    batch = make_batch(TINY)
    generator_before = snapshot(model.generator_variables)
    discriminator_before = snapshot(model.discriminator_variables)
    model.train_step(batch)
    assert not any(changed(discriminator_before, model.discriminator_variables))
    generator_changed = changed(generator_before, model.generator_variables)
    dead = [is_dead_bias(model, variable) for variable in model.generator_variables]
    # Every E0, Ed and decoder variable gets a gradient, except the unused biases before norms.
    assert all(move != is_dead for move, is_dead in zip(generator_changed, dead, strict=True))
    assert sum(dead) == 2 * (TINY.levels - 2) + TINY.levels - 1


def test_train_step_reports_every_term_and_counts_steps():
    model = compiled_model(local=True)
    logs = model.train_step(make_batch(TINY, batch_size=2))
    expected = {
        "g_total",
        "g_global_adversarial",
        "g_local_adversarial",
        "g_reconstruction",
        "g_e0_reconstruction",
        "g_intensity_adversarial",
        "d_global",
        "d_local",
        "d_intensity",
        "d_real_accuracy",
        "d_fake_accuracy",
        "intensity_mean",
        "intensity_std",
    }
    assert expected <= set(logs)
    assert all(np.isfinite(float(value)) for value in logs.values())
    assert int(model.step.numpy()) == 1


def test_generator_loss_uses_the_papers_normalisation():
    model = compiled_model(local=True)
    batch = make_batch(TINY)
    forward = model._generator_forward(batch, training=False)
    logs = model._generator_losses(forward)
    weights, targets = LossWeights(), TINY.num_targets
    expected = (
        logs["g_global_adversarial"]
        + logs["g_local_adversarial"]
        + weights.reconstruction * logs["g_reconstruction"]
        + weights.e0_reconstruction * logs["g_e0_reconstruction"]
        + weights.intensity_adversarial * logs["g_intensity_adversarial"] / targets
    )
    np.testing.assert_allclose(float(logs["g_total"]), float(expected), rtol=1e-6)


def test_ablation_switches_change_the_model():
    temporal = AffineGAN(dataclasses.replace(TINY, intensity="temporal"), False)
    assert temporal.intensity_discriminator is None
    mlp = AffineGAN(dataclasses.replace(TINY, intensity="mlp"), False)
    assert mlp.intensity_regressor is not None
    no_da = AffineGAN(dataclasses.replace(TINY, intensity_discriminator=False), False)
    assert no_da.intensity_discriminator is None
    batch = make_batch(TINY)
    temporal.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    forward = temporal._generator_forward(batch, training=False)
    np.testing.assert_allclose(forward.intensities.numpy(), batch["target_positions"].numpy())


def test_mixed_precision_step_runs_with_loss_scaling():
    # float16 convolutions are slow on CPUs: a small model keeps the test quick.
    config = dataclasses.replace(TINY, image_size=32, ngf=8, ndf=8)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = AffineGAN(config, use_local_discriminator=True)
        model.compile(
            keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3)),
            keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3)),
        )
        before = snapshot(model.generator_variables)
        # Dynamic loss scaling starts high and skips steps whose gradients overflow float16,
        # halving the scale each time, until one step goes through.
        step, batch = tf.function(model.train_step), make_batch(config)
        for _ in range(12):
            logs = step(batch)
            if any(changed(before, model.generator_variables)):
                break
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.generator.decoder.blocks[0].conv.compute_dtype == "float16"
    assert model.generator_variables[0].dtype == "float32"  # master weights stay float32
    assert all(np.isfinite(float(value)) for value in logs.values())
    assert any(changed(before, model.generator_variables))


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_attention_output_copies_the_input_where_the_mask_is_closed(upsample):
    config = dataclasses.replace(TINY, output="attention", upsample=upsample, dropout=0.0)
    generator = AffineGenerator(config)
    generator.build()
    faces = tf.random.uniform((2, 64, 64, 3), -1, 1, seed=6)
    intensities = tf.constant([0.0, 1.0])
    set_uniform_mask(generator, -30.0)  # mask = (tanh(-30) + 1) / 2 = 0: copy
    np.testing.assert_allclose(generator((faces, intensities)).numpy(), faces.numpy(), atol=1e-6)
    set_uniform_mask(generator, 30.0)  # mask = 1: the drawn frame, whatever the source
    base, delta = generator.encode(faces)
    drawn = generator.decode(base, delta, intensities, source=faces).numpy()
    other = generator.decode(base, delta, intensities, source=-faces).numpy()
    np.testing.assert_allclose(drawn, other, atol=1e-6)
    assert np.abs(drawn - faces.numpy()).mean() > 0.1


def test_attention_output_needs_its_source_and_trains():
    config = dataclasses.replace(TINY, output="attention")
    generator = AffineGenerator(config)
    generator.build()
    base, delta = generator.encode(tf.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="source"):
        generator.decode(base, delta, tf.constant([0.5]))
    model = compiled_model(config)
    logs = model.train_step(make_batch(config))
    assert all(np.isfinite(float(value)) for value in logs.values())
    assert int(model.step) == 1


def test_output_mode_is_checked_and_old_configs_read_as_image():
    with pytest.raises(Exception, match="output must be one of"):
        dataclasses.replace(TINY, output="mask")
    values = RunConfig().to_dict()
    values["model"].pop("output")  # a config.json written before the option existed
    assert RunConfig.from_dict(values).model.output == "image"
