"""The speed rewrites change no result: reference maths written out here, same weights and inputs.

The rewrites (issue 11): convs that feed instance norm skip their bias add (the norm removes it),
instance norm multiplies by 1/sqrt(var + eps) computed on the small statistics tensor, and the
affine combine broadcasts [B, K] intensities against the B neutral encodings instead of repeating
the features K times; in training steps the innermost levels (convs of maps up to 8x8, transposed
convs of maps up to 4x4) compute as matrix products (im2col / col2im with a constant 0/1 tap
matrix, then one product with the kernel); larger transposed
convs of maps up to 16x16 (and the input gradients of the strided convs producing them) run as
four 2x2 convs + depth_to_space, in training and in TensorFlow generation, on machines where that
is faster (`conv_forms`; forced on here). The
references below are the old computation: conv + bias, divide by sqrt, `ops.repeat`, the Keras
conv ops.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from batches import make_batch
from keras import layers as keras_layers
from keras import ops

from affinegan_tf import conv_forms, networks
from affinegan_tf import layers as affine_layers
from affinegan_tf.config import PRESETS, LossWeights
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.layers import NormalisedConv2D, NormalisedConv2DTranspose
from affinegan_tf.networks import AffineGenerator, PatchDiscriminator

TINY = PRESETS["tiny"]
# float32 noise: a bias of std 0.5 removed by the norm before (old) or not added (new), through
# up to 12 layers and norms over as few as 2 x 2 values.
ATOL = 1e-4


def reference_instance_norm(values, epsilon=1e-5):
    mean = ops.mean(values, axis=(1, 2), keepdims=True)
    centred = values - mean
    variance = ops.mean(ops.square(centred), axis=(1, 2), keepdims=True)
    return centred / ops.sqrt(variance + epsilon)


def reference_conv(conv, values):
    """The conv as Keras computes it, bias added (what the rewrite skips before a norm)."""
    if isinstance(conv, keras_layers.Conv2DTranspose):
        outputs = ops.conv_transpose(values, conv.kernel, strides=2, padding="same")
    else:
        outputs = ops.conv(values, conv.kernel, strides=conv.strides, padding=conv.padding)
    return outputs + conv.bias


def reference_combine(base, delta, intensities):
    """The old training combine: K repeated copies of each neutral's features."""
    repeats = intensities.shape[1]
    base = ops.repeat(base, repeats, axis=0)
    delta = ops.repeat(delta, repeats, axis=0)
    return base + ops.reshape(intensities, (-1, 1, 1, 1)) * delta


def reference_encoder(encoder, images):
    features, values = [], images
    for block in encoder.blocks:
        values = ops.leaky_relu(values, 0.2) if block.activate else values
        values = reference_conv(block.conv, values)
        values = reference_instance_norm(values) if block.norm is not None else values
        features.append(values)
    return features


def reference_decoder(decoder, features):
    values = features[-1]
    for index, block in enumerate(decoder.blocks):
        if index > 0:
            values = ops.concatenate([features[-1 - index], values], axis=-1)
        values = ops.relu(values)
        if block.resize:
            height, width = values.shape[1], values.shape[2]
            values = ops.image.resize(values, (2 * height, 2 * width), interpolation="nearest")
        values = reference_conv(block.conv, values)
        values = ops.tanh(values) if block.outermost else reference_instance_norm(values)
    return values


def reference_patch_discriminator(discriminator, pairs):
    values = pairs
    for conv, norm in zip(discriminator.convs, discriminator.norms, strict=True):
        values = reference_conv(conv, ops.pad(values, ((0, 0), (1, 1), (1, 1), (0, 0))))
        values = reference_instance_norm(values) if norm is not None else values
        values = ops.leaky_relu(values, 0.2)
    return discriminator.logits(ops.pad(values, ((0, 0), (1, 1), (1, 1), (0, 0))))


def randomise_biases(model, seed):
    """Non-zero biases everywhere, as a trained (old) checkpoint has: the skip must not matter."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if variable.path.endswith("bias"):
            variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_generator_equals_the_old_computation(upsample):
    config = dataclasses.replace(TINY, upsample=upsample)
    generator = AffineGenerator(config, seed=3)
    generator.build()
    randomise_biases(generator, seed=1)
    rng = np.random.default_rng(2)
    size = config.image_size
    neutral = tf.constant(rng.uniform(-1, 1, (2, size, size, 3)), tf.float32)
    intensities = tf.constant(rng.uniform(0, 1.5, (2, 3)), tf.float32)

    base, delta = generator.encode(neutral)
    expected_base = reference_encoder(generator.base_encoder, neutral)
    for got, expected in zip(base, expected_base, strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=ATOL)

    combined = generator.combine(base, delta, intensities)
    expected_combined = [
        reference_combine(b, d, intensities) for b, d in zip(base, delta, strict=True)
    ]
    for got, expected in zip(combined, expected_combined, strict=True):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=ATOL)

    decoded = generator.decoder(combined)
    expected = reference_decoder(generator.decoder, expected_combined)
    np.testing.assert_allclose(decoded.numpy(), expected.numpy(), atol=ATOL)


def test_patch_discriminator_equals_the_old_computation():
    discriminator = PatchDiscriminator(16)
    rng = np.random.default_rng(4)
    pairs = tf.constant(rng.uniform(-1, 1, (3, 64, 64, 6)), tf.float32)
    discriminator(pairs)
    randomise_biases(discriminator, seed=5)
    np.testing.assert_allclose(
        discriminator(pairs).numpy(),
        reference_patch_discriminator(discriminator, pairs).numpy(),
        atol=ATOL,
    )


def values_and_gradients(function, inputs, kernel):
    """function(inputs, kernel), and the gradients of a non-linear loss of it to both."""
    with tf.GradientTape() as tape:
        tape.watch([inputs, kernel])
        outputs = function(inputs, kernel)
        loss = tf.reduce_sum(tf.sin(3.0 * outputs))
    return (outputs, *tape.gradient(loss, [inputs, kernel]))


def standard_conv(inputs, kernel):
    return ops.conv(inputs, kernel, strides=2, padding="same")


def standard_conv_transpose(inputs, kernel):
    return ops.conv_transpose(inputs, kernel, strides=2, padding="same")


def assert_same_maths(function, standard, inputs_shape, kernel_shape, seed):
    """`function` against the standard conv op: values, input and kernel gradients; returns
    the output shape."""
    rng = np.random.default_rng(seed)
    inputs = tf.constant(rng.normal(0, 1, inputs_shape), tf.float32)
    kernel = tf.constant(rng.normal(0, 0.1, kernel_shape), tf.float32)
    got = values_and_gradients(function, inputs, kernel)
    expected = values_and_gradients(standard, inputs, kernel)
    for got_values, expected_values in zip(got, expected, strict=True):
        np.testing.assert_allclose(got_values.numpy(), expected_values.numpy(), atol=ATOL)
    return tuple(got[0].shape)


@pytest.mark.parametrize("size", [(2, 2), (4, 4), (8, 8), (4, 8)])
def test_small_map_conv_is_the_strided_conv_forward_and_backward(size):
    height, width = size
    shape = assert_same_maths(
        affine_layers.small_map_conv,
        standard_conv,
        (3, height, width, 24),
        (4, 4, 24, 40),
        height + width,
    )
    assert shape == (3, height // 2, width // 2, 40)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (4, 4), (2, 4)])
def test_small_map_conv_transpose_is_the_transposed_conv_forward_and_backward(size):
    height, width = size
    shape = assert_same_maths(
        affine_layers.small_map_conv_transpose,
        standard_conv_transpose,
        (3, height, width, 24),
        (4, 4, 40, 24),
        10 + height + width,
    )
    assert shape == (3, 2 * height, 2 * width, 40)


@pytest.mark.parametrize("function", ["fast_conv_transpose", "subpixel_conv_transpose"])
@pytest.mark.parametrize("size", [(4, 4), (8, 8), (4, 8)])
def test_subpixel_conv_transpose_is_the_transposed_conv_forward_and_backward(function, size):
    shape = assert_same_maths(
        getattr(conv_forms, function),
        standard_conv_transpose,
        (3, *size, 24),
        (4, 4, 40, 24),
        sum(size),
    )
    assert shape == (3, 2 * size[0], 2 * size[1], 40)


@pytest.mark.parametrize("size", [8, 16])
def test_fast_strided_conv_is_the_strided_conv_forward_and_backward(size):
    shape = assert_same_maths(
        conv_forms.fast_strided_conv, standard_conv, (3, size, size, 24), (4, 4, 24, 40), 20 + size
    )
    assert shape == (3, size // 2, size // 2, 40)


def decoder_op_types(generator, portable: bool) -> list[str]:
    """The op types of the traced decode of 3 intensities (inference), optionally portable."""
    base, delta = generator.encode(tf.zeros((1, 64, 64, 3)))
    decode = tf.function(lambda a: generator.decode(base, delta, a))
    if portable:
        with conv_forms.portable_graph():
            graph = decode.get_concrete_function(tf.TensorSpec([3], tf.float32)).graph
    else:
        graph = decode.get_concrete_function(tf.TensorSpec([3], tf.float32)).graph
    return [operation.type for operation in graph.get_operations()]


def test_generation_takes_the_faster_transposed_convs_and_exports_the_standard_ones(
    monkeypatch,
):
    monkeypatch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "subpixel")
    generator = AffineGenerator(TINY, seed=3)
    generator.build()
    # tiny decodes from 1x1 to 64x64: transposed convs from maps of 1, 2, 4, 8, 16 and 32 pixels.
    fast = decoder_op_types(generator, portable=False)
    assert fast.count("Conv2DBackpropInput") == 1  # the outermost (32 -> 64) only
    assert fast.count("DepthToSpace") == 2  # 8 and 16; 1, 2 and 4 are matrix products
    assert fast.count("BatchMatMulV2") == 3
    portable = decoder_op_types(generator, portable=True)
    assert portable.count("Conv2DBackpropInput") == 6
    assert not {"DepthToSpace", "MatMul", "BatchMatMulV2"} & set(portable)
    # Where the machine's own transposed conv is as fast, only the matrix products remain.
    monkeypatch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "standard")
    standard = decoder_op_types(generator, portable=False)
    assert standard.count("Conv2DBackpropInput") == 3  # 8, 16, 32
    assert "DepthToSpace" not in standard and standard.count("BatchMatMulV2") == 3


def test_the_machine_decides_the_conv_forms_unless_told(monkeypatch):
    decision = conv_forms.probe()
    assert decision["standard_seconds"] > 0 and decision["subpixel_seconds"] > 0
    assert decision["subpixel_is_faster"] == (
        decision["standard_seconds"] > conv_forms.PROBE_MARGIN * decision["subpixel_seconds"]
    )
    monkeypatch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "auto")
    assert conv_forms.use_subpixel_forms() == decision["subpixel_is_faster"]

    def no_probe():
        raise AssertionError("a forced choice must not measure")

    monkeypatch.setattr(conv_forms, "probe", no_probe)
    monkeypatch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "Subpixel")
    assert conv_forms.use_subpixel_forms()
    monkeypatch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "standard")
    assert not conv_forms.use_subpixel_forms()
    monkeypatch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "fast")
    with pytest.raises(UserError, match="AFFINEGAN_TF_CONV_FORMS='fast'"):
        conv_forms.use_subpixel_forms()


def test_only_training_takes_the_small_map_path_and_it_gives_the_same_features():
    generator = AffineGenerator(TINY, seed=3)
    generator.build()
    randomise_biases(generator, seed=6)
    rng = np.random.default_rng(7)
    images = tf.constant(rng.uniform(-1, 1, (2, 64, 64, 3)), tf.float32)
    calls = []
    original = affine_layers.small_map_conv

    def counting(inputs, kernel):
        calls.append(inputs.shape[1])
        return original(inputs, kernel)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(affine_layers, "small_map_conv", counting)
        inference = generator.base_encoder(images)
        assert calls == []
        training = generator.base_encoder(images, training=True)
    assert calls == [8, 4, 2]  # the encoder's three innermost levels: 8x8 -> 4x4 -> 2x2 -> 1x1
    for got, expected in zip(training, inference, strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=ATOL)


def test_dead_biases_are_exactly_those_before_a_norm():
    model = AffineGAN(TINY, use_local_discriminator=True, seed=0)
    model.build()
    kinds = {}
    for layer in model._flatten_layers():
        if isinstance(layer, keras_layers.Conv2D | keras_layers.Conv2DTranspose):
            kinds[layer.path] = isinstance(layer, NormalisedConv2D | NormalisedConv2DTranspose)
    levels = TINY.levels
    normalised_convs = [path for path, dead in kinds.items() if dead]
    # Encoders: levels 1..L-2; decoder: every up block but the outermost; PatchGANs: conv_1..3.
    assert len(normalised_convs) == 2 * (levels - 2) + (levels - 1) + 2 * 3
    assert not any("down_0" in path or f"down_{levels - 1}" in path for path in normalised_convs)
    assert not any(
        "up_0" in path or "conv_0" in path or "logits" in path for path in normalised_convs
    )


def train_losses(steps):
    model = AffineGAN(TINY, use_local_discriminator=True, seed=0)
    model.compile(
        keras.optimizers.Adam(1e-3, beta_1=0.5),
        keras.optimizers.Adam(1e-3, beta_1=0.5),
        LossWeights(),
    )
    step = tf.function(model.train_step)
    history = []
    for index in range(steps):
        logs = step(make_batch(TINY, batch_size=2, seed=index))
        history.append({name: float(value) for name, value in logs.items()})
    return history


def test_a_few_training_steps_give_the_losses_of_the_old_computation(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "subpixel")  # every rewrite on
        new = train_losses(3)

    def old_instance_norm_call(self, inputs):
        values = ops.cast(inputs, "float32")
        return ops.cast(reference_instance_norm(values, self.epsilon), inputs.dtype)

    def old_affine_combine(base, delta, intensities):
        if len(intensities.shape) == 2:
            return reference_combine(base, delta, intensities)
        return base + ops.reshape(intensities, (-1, 1, 1, 1)) * delta

    apply = AffineGAN._apply

    def apply_without_dead_bias_steps(self, optimizer, tape, scaled_loss, variables):
        # The old computation adds the dead biases, so their gradients are rounding noise that
        # Adam would scale up to full steps; the new one leaves them exactly still. Keep them
        # still here too, so that only the arithmetic differs.
        dead = {
            id(layer.bias)
            for layer in self._flatten_layers()
            if isinstance(layer, NormalisedConv2D | NormalisedConv2DTranspose)
        }
        gradients = tape.gradient(scaled_loss, variables)
        gradients = [
            ops.zeros_like(variable) if id(variable) in dead else gradient
            for gradient, variable in zip(gradients, variables, strict=True)
        ]
        optimizer.apply(gradients, variables)

    assert apply is not None
    with monkeypatch.context() as patch:
        patch.setattr(AffineGAN, "_apply", apply_without_dead_bias_steps)
        patch.setattr(NormalisedConv2D, "call", keras_layers.Conv2D.call)
        patch.setattr(NormalisedConv2DTranspose, "call", keras_layers.Conv2DTranspose.call)
        patch.setattr(affine_layers.InstanceNorm, "call", old_instance_norm_call)
        patch.setattr(networks, "affine_combine", old_affine_combine)
        patch.setattr(affine_layers, "SMALL_MAP_CONV", 0)
        patch.setattr(affine_layers, "SMALL_MAP_CONV_TRANSPOSE", 0)
        patch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "standard")
        old = train_losses(3)

    assert len(new) == len(old) == 3
    # Step 1 equal to float rounding; later steps drift a little (Adam divides rounding noise
    # by small second moments, and the intensities are ratios of small bottleneck differences).
    # Accuracies are counts of logits > 0: a logit near 0 may flip.
    for step, (new_logs, old_logs) in enumerate(zip(new, old, strict=True)):
        assert new_logs.keys() == old_logs.keys()
        for name in new_logs:
            if name.endswith("accuracy"):
                tolerance = {"abs": 0.01}
            elif name.startswith("intensity"):
                # A ratio of small bottleneck differences: after two updates (D_a's gradient
                # reaches the encoders with weight 100) rounding noise moved its spread by 1.2 %
                # (measured), while every loss stays within 5e-4; with the small-map matrix
                # products (whose innermost one computes the bottleneck) by 2.9 % after two.
                tolerance = {"rel": 1e-5 if step == 0 else 5e-2}
            else:
                # Measured worst after one and two updates: 2.3e-4 and 5.5e-4 (with the
                # small-map matrix products; 5e-4 before them), against 0 between two runs of
                # the same computation: rounding noise, which Adam's first steps magnify.
                tolerance = {"rel": 1e-5 if step == 0 else 1e-3, "abs": 1e-6}
            assert new_logs[name] == pytest.approx(old_logs[name], **tolerance), (step, name)


def test_the_saved_model_keeps_the_standard_ops_whatever_the_machine_chose(monkeypatch, tmp_path):
    from affinegan_tf.export import saved_model

    monkeypatch.setenv(conv_forms.ENVIRONMENT_VARIABLE, "subpixel")
    generator = AffineGenerator(TINY, seed=3)
    generator.build()
    directory = saved_model.export_saved_model(generator, tmp_path)
    loaded, generate = saved_model.load_generate(directory)
    graph_def = generate.graph.as_graph_def()
    op_types = [node.op for function in graph_def.library.function for node in function.node_def]
    assert op_types.count("Conv2DBackpropInput") >= 6  # the decoder's six transposed convs
    assert "DepthToSpace" not in op_types and "MatMul" not in op_types


def test_the_conv_forms_benchmark_measures_both_forms_of_a_level():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "conv_forms_speed.py"
    spec = importlib.util.spec_from_file_location("conv_forms_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.level_figures(1, repeats=1)
    assert (figures["channels_in"], figures["channels_out"]) == (512, 512)
    for name in ("forward_b16", "train_b6"):
        standard, subpixel = figures[f"{name}_standard_ms"], figures[f"{name}_subpixel_ms"]
        assert standard > 0 and subpixel > 0
        assert figures[f"{name}_standard_over_subpixel"] == pytest.approx(
            standard / subpixel, rel=0.05, abs=0.01
        )
