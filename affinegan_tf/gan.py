"""AffineGAN as a keras.Model: compile() takes the two optimisers, train_step() alternates updates.

One training step, per batch of B videos with K target frames each:
1. Generator forward (under the generator's tape): encode the B neutral frames with E0 and Ed and
   the B*K targets with E0, infer a_t per target (intensity.IntensityEstimator), decode the B*K
   fakes G(I0, a_t) and the B*K reconstructions De(E0(I_t)) in one decoder call.
2. Discriminator update (own tape, own optimiser, fakes detached): global PatchGAN, local mouth
   PatchGAN when masks are used, intensity discriminator D_a.
3. Generator update (own optimiser) with the losses of AFFINEGAN.md, judged by the updated D.
4. With `ema_decay` > 0: one step of the generator's weight average (ema.py).
The generator forward is shared by steps 2 and 3, as in pix2pix, so it runs once per step.
A NaN or Inf in any logged term is recorded in graph (nonfinite.NonFiniteWatch), so that no one
has to read the losses on the host every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import ops

from affinegan_tf.config import LossWeights, ModelConfig, check_loss_weights
from affinegan_tf.ema import WeightAverage, make_average_generator
from affinegan_tf.intensity import IntensityEstimator
from affinegan_tf.layers import shift_randomly
from affinegan_tf.losses import (
    accuracy,
    discriminator_loss,
    generator_adversarial_loss,
    logits_with_r1,
    mask_mean,
    mean_absolute_error,
    total_variation,
)
from affinegan_tf.networks import (
    AffineGenerator,
    IntensityDiscriminator,
    PatchDiscriminator,
    seeded_initializers,
)
from affinegan_tf.nonfinite import NonFiniteWatch

METRIC_NAMES = (
    "g_total",
    "g_global_adversarial",
    "g_local_adversarial",
    "g_reconstruction",
    "g_e0_reconstruction",
    "g_intensity_adversarial",
    # Logged only when their weight is on (attention output; LossWeights).
    "g_attention_mask",
    "g_attention_smoothness",
    "d_global",
    "d_local",
    "d_intensity",
    # Logged only with an R1 weight (LossWeights.r1).
    "d_r1",
    "d_real_accuracy",
    "d_fake_accuracy",
    "intensity_mean",
    "intensity_std",
)


@dataclass
class GeneratorForward:
    """What one generator forward pass produces (flattened over B*K targets)."""

    neutral_repeated: tf.Tensor
    targets: tf.Tensor
    masks: tf.Tensor
    neutral_masks: tf.Tensor | None  # the neutral frames' own masks (local D only)
    fakes: tf.Tensor
    reconstructions: tf.Tensor
    intensities: tf.Tensor  # [B, K], with gradient into the encoders (affine / mlp modes)
    # The fakes' attention masks [B*K, S, S, 1], only when a loss weight penalises them.
    fake_masks: tf.Tensor | None = None


class AffineGAN(keras.Model):
    """The whole trainable system: generator, discriminators and (ablation) intensity regressor.

    Args:
        config: Model configuration (preset).
        use_local_discriminator: Whether the local mouth PatchGAN is built and trained (resolve
            "auto" against the data before constructing the model).
        seed: Seed of weights, noise and dropout. Only these are seeded: the caller's global
            random state (Python, NumPy, TensorFlow, Keras) is left as it was.
        ema_decay: > 0 keeps an exponential moving average of the generator's weights
            (`generator_ema`), which then generates and infers intensities (`inference_generator`);
            0 builds none.
    """

    def __init__(
        self,
        config: ModelConfig,
        use_local_discriminator: bool,
        seed: int = 0,
        ema_decay: float = 0.0,
        **kwargs,
    ):
        # A fixed name keeps variable paths (the checkpoint keys) the same in every process;
        # Keras would otherwise number a second instance "affine_gan_1".
        kwargs.setdefault("name", "affinegan")
        super().__init__(**kwargs)
        self.config = config
        self.use_local_discriminator = use_local_discriminator
        with seeded_initializers(seed):
            self.generator = AffineGenerator(config, seed=seed, name="generator")
            self.global_discriminator = PatchDiscriminator(config.ndf, name="global_discriminator")
            self.local_discriminator = (
                PatchDiscriminator(config.ndf, name="local_discriminator")
                if use_local_discriminator
                else None
            )
            self.intensity_estimator = IntensityEstimator(config, self.generator)
            # The mlp regressor stays an attribute of the model: its checkpoint keys are
            # affinegan/intensity_regressor/... as in every earlier run.
            self.intensity_regressor = self.intensity_estimator.regressor
            uses_intensity_d = (
                config.intensity_discriminator and self.intensity_estimator.reads_images
            )
            self.intensity_discriminator = (
                IntensityDiscriminator(config.num_targets, name="intensity_discriminator")
                if uses_intensity_d
                else None
            )
            # Built last, so that the other networks draw the same initial weights as without it
            # (its own are overwritten by the generator's at build).
            self.generator_ema = make_average_generator(config, seed) if ema_decay > 0 else None
        self.weight_average = (
            WeightAverage(self.generator, self.generator_ema, ema_decay)
            if self.generator_ema is not None
            else None
        )
        # Generation and intensity inference (samples, the intensity range, load_model's users)
        # read this estimator and `inference_generator`: the average when there is one.
        self.inference_estimator = self.intensity_estimator.bound_to(self.inference_generator)
        # Steps done, counted here: a LossScaleOptimizer does not advance its iterations on the
        # steps it skips, so the generator optimiser's counter is not the step.
        self.step_counter = self.add_weight(
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="step",
        )
        self.jitter_pixels = config.condition_jitter_pixels
        self.jitter_seed = (
            keras.random.SeedGenerator(seed + 104729, name="condition_jitter_seed")
            if self.jitter_pixels
            else None
        )
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}
        self.nonfinite_watch = NonFiniteWatch(METRIC_NAMES)

    # ------------------------------------------------------------------------- setup

    def build(self, input_shape=None):
        size, targets = self.config.image_size, self.config.num_targets
        self.generator.build()
        pair = ops.zeros((1, size, size, 6))
        self.global_discriminator(pair)
        if self.local_discriminator is not None:
            self.local_discriminator(pair)
        if self.intensity_discriminator is not None:
            self.intensity_discriminator(ops.zeros((1, targets)))
        self.intensity_estimator.build((1, 1, self.config.encoder_channels()[-1]))
        if self.weight_average is not None:
            self.generator_ema.build()
            self.weight_average.build()
        self.built = True

    def compile(
        self,
        generator_optimizer: keras.optimizers.Optimizer,
        discriminator_optimizer: keras.optimizers.Optimizer,
        loss_weights: LossWeights | None = None,
        **kwargs,
    ):
        # No optimizer for Keras itself: the default would be an RMSprop built over every
        # variable (about 320 MB per GPU at 256 under MirroredStrategy), never used.
        super().compile(optimizer=None, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self.loss_weights = loss_weights or LossWeights()
        check_loss_weights(self.config, self.loss_weights)
        if not self.built:
            self.build()
        self.generator_optimizer.build(self.generator_variables)
        self.discriminator_optimizer.build(self.discriminator_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def generator_variables(self) -> list:
        """Variables the generator optimiser updates (E0, Ed, De and, for mlp, the regressor)."""
        variables = list(self.generator.trainable_variables)
        if self.intensity_regressor is not None:
            variables += self.intensity_regressor.trainable_variables
        return variables

    @property
    def discriminator_variables(self) -> list:
        """Variables the discriminator optimiser updates (global, local and intensity D)."""
        variables = list(self.global_discriminator.trainable_variables)
        for network in (self.local_discriminator, self.intensity_discriminator):
            if network is not None:
                variables += network.trainable_variables
        return variables

    @property
    def inference_generator(self) -> AffineGenerator:
        """The generator to generate with: the weight average when the run keeps one, else the
        trained weights. The one place that choice is made."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def reset_weight_average(self) -> None:
        """Starts the weight average (if any) at the generator's current weights."""
        if self.weight_average is not None:
            self.weight_average.reset()

    @property
    def step(self):
        """Training steps done so far (a counter of our own, saved in checkpoints)."""
        return self.step_counter

    # ------------------------------------------------------------------------- intensity

    def infer_intensities(self, neutral, frames):
        """Intensity of each frame relative to a neutral frame (inference: the average's encoders).

        Args:
            neutral: [1, S, S, 3] in [-1, 1].
            frames: [N, S, S, 3] in [-1, 1].

        Returns:
            [N] float32 intensities.
        """
        return self.inference_estimator.from_images(neutral, frames)

    # ------------------------------------------------------------------------- training

    def _generator_forward(self, batch, training: bool = True) -> GeneratorForward:
        neutral = batch["neutral"]
        size, repeats = self.config.image_size, self.config.num_targets
        count = ops.shape(neutral)[0]
        targets = ops.reshape(batch["targets"], (-1, size, size, 3))
        # Only the local discriminator reads masks; without it the batch need not carry them.
        masks = (
            ops.reshape(batch["masks"], (-1, size, size, 1))
            if self.local_discriminator is not None
            else None
        )

        # E0 on the neutral frames and all targets in one call.
        base_all = self.generator.base_encoder(
            ops.concatenate([neutral, targets], axis=0), training=training
        )
        # tf.split, not slicing: the gradient of a split is one concat, that of two slices two
        # full-size StridedSliceGrads and an add (7-16x slower on 256-size feature maps).
        neutral_base, target_base = zip(
            *(tf.split(features, [count, -1], axis=0) for features in base_all), strict=True
        )
        delta = self.generator.delta_encoder(neutral, training=training)

        target_bottleneck = target_base[-1]
        intensities = self.intensity_estimator.from_bottlenecks(
            neutral_base[-1],
            ops.reshape(target_bottleneck, (-1, repeats, *target_bottleneck.shape[1:])),
            delta[-1],
            batch.get("target_positions"),
        )
        # [B, K] intensities against the B neutral encodings: broadcast, not K repeated copies.
        combined = self.generator.combine(
            neutral_base,
            delta,
            ops.reshape(self.intensity_estimator.for_decoder(intensities), (-1, repeats)),
            training=training,
        )
        total = ops.shape(targets)[0]
        # The reconstructions De(E0(I_t)) get the same training noise as the fakes: the authors
        # run them as G(I_t) with a = 0, i.e. 1 * E0 + 0 * Ed + noise at every level.
        reconstruction_features = self.generator.combine(
            target_base, target_base, ops.zeros((total,)), training=training
        )
        neutral_repeated = ops.repeat(neutral, repeats, axis=0)
        # Fakes and reconstructions in one decoder call. With attention output both edit the
        # neutral frame (a reconstruction edited from its own frame would be a copy, teaching
        # E0 nothing).
        # The masks are asked for only when a loss term reads them: with the mask weights at 0
        # the step's graph is the same as without these terms.
        with_masks = self.penalises_attention_masks
        decoded = self.generator.decoder(
            [
                ops.concatenate([fake, real], axis=0)
                for fake, real in zip(combined, reconstruction_features, strict=True)
            ],
            training=training,
            source=ops.concatenate([neutral_repeated, neutral_repeated], axis=0),
            return_mask=with_masks,
        )
        fake_masks = None
        if with_masks:
            decoded, decoded_masks = decoded
            # Only the fakes' masks are penalised, not the reconstructions': the fakes are what
            # generation draws (and where the masks spread over cheeks and hair), while the
            # reconstruction path exists to teach E0 the target's expression and is weighted
            # 10x less (e0_reconstruction 10 against reconstruction 100), so the same mask weight
            # would pull its masks shut ten times harder relative to its own term and starve
            # that signal. The decoder is shared, so sparser fake masks carry over anyway.
            fake_masks, _ = tf.split(decoded_masks, 2, axis=0)
        fakes, reconstructions = tf.split(decoded, 2, axis=0)
        neutral_masks = None
        if self.local_discriminator is not None:
            neutral_masks = ops.repeat(batch["neutral_mask"], repeats, axis=0)
        return GeneratorForward(
            neutral_repeated=neutral_repeated,
            targets=targets,
            masks=masks,
            neutral_masks=neutral_masks,
            fakes=fakes,
            reconstructions=reconstructions,
            intensities=intensities,
            fake_masks=fake_masks,
        )

    @property
    def penalises_attention_masks(self) -> bool:
        """Whether the compiled loss weights put a term on the attention masks."""
        weights = getattr(self, "loss_weights", None)
        return weights is not None and weights.penalises_attention_masks

    def _scaled(self, optimizer, loss):
        """The loss to differentiate: per-replica share of the global-batch mean, loss-scaled.

        Must be called inside the tape: the optimiser sums gradients over replicas.
        """
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            loss = optimizer.scale_loss(loss)
        return loss

    def _apply(self, optimizer, tape, scaled_loss, variables):
        # The biases of convs feeding instance norm are not in the graph (layers.NormalisedConv2D):
        # their gradient is exactly zero, so Adam leaves them as they are.
        gradients = tape.gradient(scaled_loss, variables)
        gradients = [
            ops.zeros_like(variable) if gradient is None else gradient
            for gradient, variable in zip(gradients, variables, strict=True)
        ]
        optimizer.apply(gradients, variables)

    def _condition(self, neutral):
        """The neutral frames as the image discriminators see them in a pair (`ModelConfig.
        condition_jitter`: shifted at random, one offset per call)."""
        if not self.jitter_pixels:
            return neutral
        return shift_randomly(neutral, self.jitter_pixels, self.jitter_seed)

    def _judge(self, discriminator, pairs, real_count, logs: dict):
        """Logits on pairs; with an R1 weight, also adds the penalty of the first `real_count`
        (real) pairs to logs["d_r1"] (summed over the image discriminators)."""
        if self.loss_weights.r1 <= 0:
            return discriminator(pairs)
        logits, penalty = logits_with_r1(discriminator, pairs, real_count)
        logs["d_r1"] = logs.get("d_r1", 0.0) + penalty
        return logits

    def _discriminator_step(self, batch, forward: GeneratorForward) -> dict:
        """One update of every discriminator on real pairs and detached fakes."""
        fakes = ops.stop_gradient(forward.fakes)
        # Real and fake pairs share one conditioning frame (and shift) per discriminator.
        neutral, targets, masks = forward.neutral_repeated, forward.targets, forward.masks
        conditioned = self._condition(neutral)
        total = ops.shape(targets)[0]
        logs = {}
        with tf.GradientTape() as tape:
            pairs = ops.concatenate(
                [
                    ops.concatenate([conditioned, targets], axis=-1),
                    ops.concatenate([conditioned, fakes], axis=-1),
                ],
                axis=0,
            )
            logits = self._judge(self.global_discriminator, pairs, total, logs)
            real_logits, fake_logits = logits[:total], logits[total:]
            loss = logs["d_global"] = discriminator_loss(real_logits, fake_logits)
            if self.local_discriminator is not None:
                # Each frame masked by its own mask: the neutral frame by the neutral's.
                masked_neutral = self._condition(ops.multiply(neutral, forward.neutral_masks))
                local_logits = self._judge(
                    self.local_discriminator,
                    ops.concatenate(
                        [
                            ops.concatenate(
                                [masked_neutral, ops.multiply(targets, masks)], axis=-1
                            ),
                            ops.concatenate([masked_neutral, ops.multiply(fakes, masks)], axis=-1),
                        ],
                        axis=0,
                    ),
                    total,
                    logs,
                )
                logs["d_local"] = discriminator_loss(local_logits[:total], local_logits[total:])
                loss = loss + logs["d_local"]
            if self.intensity_discriminator is not None:
                real_intensity_logits = self.intensity_discriminator(batch["prior_intensities"])
                fake_intensity_logits = self.intensity_discriminator(
                    ops.stop_gradient(forward.intensities)
                )
                logs["d_intensity"] = discriminator_loss(
                    real_intensity_logits, fake_intensity_logits
                )
                loss = loss + logs["d_intensity"]
            if "d_r1" in logs:
                loss = loss + 0.5 * self.loss_weights.r1 * logs["d_r1"]
            scaled = self._scaled(self.discriminator_optimizer, loss)
        self._apply(self.discriminator_optimizer, tape, scaled, self.discriminator_variables)
        logs["d_real_accuracy"] = accuracy(real_logits, True)
        logs["d_fake_accuracy"] = accuracy(fake_logits, False)
        return logs

    def _generator_losses(self, forward: GeneratorForward) -> dict:
        """The generator's loss terms and their weighted total (AFFINEGAN.md's normalisation)."""
        weights = self.loss_weights
        neutral, fakes = forward.neutral_repeated, forward.fakes
        fake_pairs = ops.concatenate([self._condition(neutral), fakes], axis=-1)
        logs = {
            "g_global_adversarial": generator_adversarial_loss(
                self.global_discriminator(fake_pairs)
            ),
            "g_reconstruction": mean_absolute_error(forward.targets, fakes),
            "g_e0_reconstruction": mean_absolute_error(forward.targets, forward.reconstructions),
        }
        # Per-target terms are means over the K targets, i.e. sum_t(...) / K.
        total = (
            weights.global_adversarial * logs["g_global_adversarial"]
            + weights.reconstruction * logs["g_reconstruction"]
            + weights.e0_reconstruction * logs["g_e0_reconstruction"]
        )
        if self.local_discriminator is not None:
            local_pairs = ops.concatenate(
                [
                    self._condition(ops.multiply(neutral, forward.neutral_masks)),
                    ops.multiply(fakes, forward.masks),
                ],
                axis=-1,
            )
            logs["g_local_adversarial"] = generator_adversarial_loss(
                self.local_discriminator(local_pairs)
            )
            total = total + weights.local_adversarial * logs["g_local_adversarial"]
        if weights.attention_mask > 0:
            logs["g_attention_mask"] = mask_mean(forward.fake_masks)
            total = total + weights.attention_mask * logs["g_attention_mask"]
        if weights.attention_smoothness > 0:
            logs["g_attention_smoothness"] = total_variation(forward.fake_masks)
            total = total + weights.attention_smoothness * logs["g_attention_smoothness"]
        if self.intensity_discriminator is not None:
            logs["g_intensity_adversarial"] = generator_adversarial_loss(
                self.intensity_discriminator(forward.intensities)
            )
            # Added once per sample, then the whole sum divided by K.
            total = total + (
                weights.intensity_adversarial
                * logs["g_intensity_adversarial"]
                / self.config.num_targets
            )
        logs["g_total"] = total
        return logs

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            forward = self._generator_forward(batch, training=True)
            with tape.stop_recording():
                logs = self._discriminator_step(batch, forward)
            generator_logs = self._generator_losses(forward)
            scaled = self._scaled(self.generator_optimizer, generator_logs["g_total"])
        self._apply(self.generator_optimizer, tape, scaled, self.generator_variables)
        if self.weight_average is not None:
            self.weight_average.update(self.step_counter)
        self.step_counter.assign_add(1)
        logs.update(generator_logs)
        intensities = ops.reshape(forward.intensities, (-1,))
        logs["intensity_mean"] = ops.mean(intensities)
        logs["intensity_std"] = ops.std(intensities)
        for name, value in logs.items():
            self.trackers[name].update_state(value)
        self.nonfinite_watch.update_state(self.step, logs)
        return {name: self.trackers[name].result() for name in logs}
