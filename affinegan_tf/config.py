"""Typed, frozen configuration objects and the named presets.

Every fact about a run lives here exactly once: image size, channel widths, loss weights, the
learning-rate schedule, the data options. A run writes its resolved `RunConfig` to
`<run>/config.json`; `RunConfig.from_dict` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from affinegan_tf.errors import UserError

# Pixel normalisation, defined once: uint8 [0, 255] at the edges, float32 [-1, 1] inside the model.
PIXEL_SCALE = 127.5
PIXEL_OFFSET = 1.0

# The authors' 286 -> 256 resize-then-crop ratio, applied at any image size.
LOAD_SIZE_RATIO = 286 / 256

UPSAMPLE_MODES = ("transpose", "resize")
OUTPUT_MODES = ("image", "attention")
INTENSITY_MODES = ("affine", "mlp", "temporal")
INTENSITY_FORMULAS = ("paper", "authors_code")
LOCAL_D_MODES = ("auto", "on", "off")
MIXED_PRECISION_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the generator and the discriminators.

    Attributes:
        image_size: Side of the square model input and output; a power of two >= 16. The number of
            U-Net levels is log2(image_size), so the bottleneck is always 1x1.
        ngf: Width of the first encoder convolution; level i has ngf * min(2**i, 8) channels.
        ndf: Width of the first PatchGAN convolution.
        upsample: "transpose" (pix2pix transposed convolutions) or "resize" (nearest-neighbour
            resize then a 3x3 convolution: no ConvTranspose in exported graphs, for mobile).
        noise_std: Std of the Gaussian noise added to each combined feature during training.
        dropout: Dropout rate of the decoder blocks right after the innermost one (training only).
        intensity: "affine" (the method), "mlp" (a small network regresses intensity from the
            image; the paper's ablation) or "temporal" (a_t = t / T from frame position, FAN-style).
        intensity_formula: The affine mode's projection: "paper" (|<f_t - f_0, f_d>| /
            (<f_d, f_d> + eps)) or "authors_code" (divided by |f_d| + eps instead).
        intensity_discriminator: Whether the intensity discriminator D_a is trained and used.
        local_discriminator: "auto" (on exactly when the data set has masks), "on" or "off".
        num_targets: K, target frames drawn per training sample.
        intensity_gradient: Whether the generator's losses also train the encoders through a_t
            (a deviation: the authors' code feeds a_t to the decoder as a constant, so only D_a's
            loss reaches the encoders through it).
        output: "image" (the paper: the decoder draws the whole frame, tanh) or "attention" (a
            deviation, as in GANimation: the decoder also draws a mask m in [0, 1] and the frame
            is m * drawn + (1 - m) * input, so what the expression does not change is copied
            from the input photo instead of being redrawn).
        condition_jitter: Training only, a deviation (0, off, is the paper): the neutral frame of
            every pair the image discriminators judge, real or fake, is shifted by a random
            offset of up to this fraction of the image side (mirrored borders). The head moves
            between the frames of a real video, so a real pair is never pixel-aligned; without
            the shift a fake that copies the photo where the expression changes nothing is told
            apart by its exact alignment, and the generator learns to redraw (blurred) outlines.
    """

    image_size: int = 256
    ngf: int = 64
    ndf: int = 64
    upsample: str = "transpose"
    noise_std: float = 0.01
    dropout: float = 0.5
    intensity: str = "affine"
    intensity_formula: str = "paper"
    intensity_discriminator: bool = True
    local_discriminator: str = "auto"
    num_targets: int = 5
    intensity_gradient: bool = False
    output: str = "image"
    condition_jitter: float = 0.0

    def __post_init__(self) -> None:
        size = self.image_size
        if size < 16 or size & (size - 1):
            raise UserError(f"image_size must be a power of two >= 16, got {size}.")
        if self.upsample not in UPSAMPLE_MODES:
            raise UserError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}.")
        if self.intensity not in INTENSITY_MODES:
            raise UserError(f"intensity must be one of {INTENSITY_MODES}, got {self.intensity!r}.")
        if self.intensity_formula not in INTENSITY_FORMULAS:
            raise UserError(
                f"intensity_formula must be one of {INTENSITY_FORMULAS}, "
                f"got {self.intensity_formula!r}."
            )
        if self.local_discriminator not in LOCAL_D_MODES:
            raise UserError(
                f"local_discriminator must be one of {LOCAL_D_MODES}, "
                f"got {self.local_discriminator!r}."
            )
        if self.num_targets < 1:
            raise UserError(f"num_targets must be >= 1, got {self.num_targets}.")
        if self.output not in OUTPUT_MODES:
            raise UserError(f"output must be one of {OUTPUT_MODES}, got {self.output!r}.")
        if not 0 <= self.condition_jitter <= 0.25:
            raise UserError(
                f"condition_jitter must be in [0, 0.25] (a fraction of the image side), "
                f"got {self.condition_jitter}."
            )

    @property
    def levels(self) -> int:
        """Number of U-Net levels (encoder convolutions): log2(image_size)."""
        return int(math.log2(self.image_size))

    @property
    def dropout_blocks(self) -> int:
        """Decoder blocks with dropout: pix2pix's rule, levels - 5 (3 at 256, 1 at 64)."""
        return max(self.levels - 5, 0)

    @property
    def load_size(self) -> int:
        """Size frames are resized to before the random crop (286 for 256)."""
        return int(round(self.image_size * LOAD_SIZE_RATIO))

    @property
    def condition_jitter_pixels(self) -> int:
        """`condition_jitter` in pixels at this image size (at least 1 when it is on)."""
        if self.condition_jitter == 0:
            return 0
        return max(1, round(self.condition_jitter * self.image_size))

    def encoder_channels(self) -> list[int]:
        """Output channels of each encoder level, outermost first."""
        return [self.ngf * min(2**i, 8) for i in range(self.levels)]


@dataclass(frozen=True)
class DataConfig:
    """Where the training videos are and how they are read.

    Attributes:
        data_dir: Data set root (containing train/) or a folder of videos.
        face_crop: Crop every video to the face found in its neutral frame.
        face_margin: Margin around the detected face box, as a fraction of its side.
        strict: Make any unusable video an error instead of a skipped-with-warning.
        cache_dir: Where decoded frames are cached; None means `<data_dir>/.affinegan_cache`
            or, if that is not writable, the user cache folder.
        max_frames: Frames kept per video (evenly subsampled when a clip has more); None keeps all.
    """

    data_dir: str = ""
    face_crop: bool = False
    face_margin: float = 0.35
    strict: bool = False
    cache_dir: str | None = None
    max_frames: int | None = 64


@dataclass(frozen=True)
class LossWeights:
    """Loss weights of AFFINEGAN.md (paper values by default), plus two that are off by default.

    Attributes:
        global_adversarial: Global PatchGAN's generator term.
        local_adversarial: Local (mouth) PatchGAN's generator term.
        reconstruction: L1 of the fakes G(I0, a_t) to the targets I_t.
        e0_reconstruction: L1 of the reconstructions De(E0(I_t)) to the targets.
        intensity_adversarial: D_a's generator term (added once per sample, then / K).
        attention_mask: Only with `ModelConfig.output = "attention"`: the mean of the fakes'
            masks m (GANimation's mask term, but penalising edits: our m = 1 redraws the
            pixel, m = 0 copies the input), so that the decoder redraws only what the
            expression changes. 0 (off) by default.
        attention_smoothness: Only with attention output: the total variation of the fakes'
            masks (`losses.total_variation`, a mean over neighbour pairs, not GANimation's
            sum), so that masks are smooth regions, not speckles. 0 (off) by default.
        r1: gamma of an R1 penalty (Mescheder et al. 2018) on the image discriminators (global
            and local): gamma / 2 times the squared norm of the gradient of each real pair's
            mean patch logit with respect to the pair. Not in the paper; 0 (off) by default.
    """

    global_adversarial: float = 1.0
    local_adversarial: float = 1.0
    reconstruction: float = 100.0
    e0_reconstruction: float = 10.0
    intensity_adversarial: float = 100.0
    attention_mask: float = 0.0
    attention_smoothness: float = 0.0
    r1: float = 0.0

    def __post_init__(self) -> None:
        for name in (*ATTENTION_LOSS_WEIGHTS, "r1"):
            if getattr(self, name) < 0:
                raise UserError(
                    f"train.loss_weights.{name} must be >= 0 (0 = off), got {getattr(self, name)}."
                )

    @property
    def penalises_attention_masks(self) -> bool:
        """Whether a term on the attention masks is on (the train step then asks for them)."""
        return any(getattr(self, name) > 0 for name in ATTENTION_LOSS_WEIGHTS)


# The loss weights that only mean something with attention output (they act on its mask).
ATTENTION_LOSS_WEIGHTS = ("attention_mask", "attention_smoothness")


def check_loss_weights(model: ModelConfig, weights: LossWeights) -> None:
    """Raises UserError when a loss weight is on that the model's output mode has no use for.

    Args:
        model: The model's configuration (its `output`).
        weights: The loss weights of the run.
    """
    if model.output == "attention":
        return
    for name in ATTENTION_LOSS_WEIGHTS:
        value = getattr(weights, name)
        if value > 0:
            raise UserError(
                f"train.loss_weights.{name} = {value} penalises the attention mask, but "
                f'model.output is "{model.output}" (no mask). Set [model] output = "attention" '
                f"in the recipe (or pass --output-mode attention), or set {name} to 0."
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping of a training run.

    Attributes:
        batch_size: Videos per step (global batch under tf.distribute).
        epochs: Passes over the training videos; ignored when `steps` is set.
        steps: Total generator steps; overrides `epochs` when set.
        learning_rate: Adam learning rate of both optimisers.
        beta_1: Adam beta1.
        beta_2: Adam beta2.
        decay_fraction: Fraction of the run, at its end, over which the rate decays linearly to 0
            (used when neither `decay_epochs` nor `decay_steps` is given).
        decay_epochs: Length of that linear tail in epochs (the authors' `niter_decay`: 100 of
            their 10,100 epochs). With `steps` set instead of `epochs`, the tail keeps the same
            share of the run: decay_epochs / epochs. A tail longer than the run covers all of it.
        decay_steps: Length of the tail in generator steps; overrides the two above.
        loss_weights: The loss weights (`LossWeights`).
        checkpoint_every: Steps between checkpoints (and sample GIFs).
        keep_checkpoints: Checkpoints kept on disk.
        log_every: Steps between TensorBoard scalar writes.
        steps_per_execution: Training steps per call into the compiled graph (Keras's
            `steps_per_execution`): fewer round trips to the host, which matters where steps are
            short (GPUs); a Ctrl-C then stops at the end of the current group of steps. Must
            divide `checkpoint_every` and `log_every`. 1 measured fastest on CPUs.
        mixed_precision: Train with reduced-precision compute (`mixed_precision_dtype`), keeping
            float32 weights.
        mixed_precision_dtype: "float16" (with loss scaling; for GPUs) or "bfloat16" (no loss
            scaling needed; for CPUs with AVX512-BF16 / AMX and recent GPUs). Only read when
            `mixed_precision` is on.
        seed: Seed of every random choice of the run (data order, crops, noise, weights).
        ema_decay: Keep an exponential moving average of the generator's weights with this decay
            and generate with it (`ema.py`); 0 keeps none (the default). Valid: 0 <= d < 1;
            0.999 averages over roughly the last 1,000 steps.
    """

    batch_size: int = 1
    epochs: int = 200
    steps: int | None = None
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    decay_fraction: float = 0.5
    decay_epochs: int | None = None
    decay_steps: int | None = None
    loss_weights: LossWeights = field(default_factory=LossWeights)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    steps_per_execution: int = 1
    mixed_precision: bool = False
    mixed_precision_dtype: str = "float16"
    seed: int = 0
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}.")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise UserError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}.")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"steps must be >= 1, got {self.steps}.")
        if self.epochs < 1:
            raise UserError(f"epochs must be >= 1, got {self.epochs}.")
        group = self.steps_per_execution
        if group < 1 or self.checkpoint_every % group or self.log_every % group:
            raise UserError(
                f"steps_per_execution must be >= 1 and divide checkpoint_every "
                f"({self.checkpoint_every}) and log_every ({self.log_every}), got {group}."
            )
        if self.mixed_precision_dtype not in MIXED_PRECISION_DTYPES:
            raise UserError(
                f"mixed_precision_dtype must be one of {MIXED_PRECISION_DTYPES}, "
                f"got {self.mixed_precision_dtype!r}."
            )
        if self.decay_epochs is not None and self.decay_epochs < 0:
            raise UserError(f"decay_epochs must be >= 0, got {self.decay_epochs}.")
        if self.decay_steps is not None and self.decay_steps < 0:
            raise UserError(f"decay_steps must be >= 0, got {self.decay_steps}.")
        if self.decay_epochs is not None and self.decay_steps is not None:
            raise UserError("Give the learning-rate tail as decay_epochs or decay_steps, not both.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(
                f"ema_decay must be in [0, 1) (0 = no average of the generator), "
                f"got {self.ema_decay}."
            )

    @property
    def precision_policy(self) -> str:
        """The Keras dtype policy to build the model under ("float32" or "mixed_<dtype>")."""
        return f"mixed_{self.mixed_precision_dtype}" if self.mixed_precision else "float32"

    @property
    def loss_scaling(self) -> bool:
        """Whether the optimisers need loss scaling (float16 only: bfloat16 has float32's range)."""
        return self.mixed_precision and self.mixed_precision_dtype == "float16"

    def total_steps(self, num_videos: int) -> int:
        """Total generator steps for a data set of `num_videos` videos."""
        if self.steps is not None:
            return self.steps
        return self.epochs * steps_per_epoch(num_videos, self.batch_size)

    def decay_steps_of(self, total_steps: int) -> int:
        """Steps of the linear learning-rate tail for a run of `total_steps` steps."""
        if self.decay_steps is not None:
            tail = self.decay_steps
        elif self.decay_epochs is not None:
            tail = int(round(total_steps * min(self.decay_epochs / self.epochs, 1.0)))
        else:
            tail = int(round(total_steps * self.decay_fraction))
        return min(tail, total_steps)


def steps_per_epoch(num_videos: int, batch_size: int) -> int:
    """Steps that visit every video once."""
    return max(1, math.ceil(num_videos / batch_size))


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; written to `<run>/config.json`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "paper"

    def __post_init__(self) -> None:
        check_loss_weights(self.model, self.train.loss_weights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        return _from_dict(cls, values, "config")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"Cannot read run config {path}: {error}.") from error
        return cls.from_dict(values)


def _from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Builds a (nested) frozen dataclass from a dict, rejecting unknown keys by name."""
    if not isinstance(values, dict):
        raise UserError(f"{where} must be a table/object, got {type(values).__name__}.")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(
            f"Unknown setting(s) {', '.join(unknown)} in {where}; "
            f"known: {', '.join(sorted(known))}."
        )
    kwargs = {}
    for name, value in values.items():
        nested = _NESTED.get((cls, name))
        kwargs[name] = _from_dict(nested, value, f"{where}.{name}") if nested else value
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise UserError(f"Invalid {where}: {error}.") from error


_NESTED = {
    (RunConfig, "model"): ModelConfig,
    (RunConfig, "data"): DataConfig,
    (RunConfig, "train"): TrainConfig,
    (TrainConfig, "loss_weights"): LossWeights,
}


PRESETS: dict[str, ModelConfig] = {
    # The paper's network: 256x256, ngf = ndf = 64, transposed-conv decoder.
    "paper": ModelConfig(image_size=256, ngf=64, ndf=64),
    # Same design at 128x128: a quarter of the compute per image.
    "small": ModelConfig(image_size=128, ngf=64, ndf=64),
    # For tests and the demo: 64x64 and narrow, trains at tens of steps per second on 2 cores.
    "tiny": ModelConfig(image_size=64, ngf=32, ndf=32),
    # For phones: narrower, resize+conv upsampling (no ConvTranspose in exported graphs).
    "mobile": ModelConfig(image_size=256, ngf=32, ndf=64, upsample="resize"),
}

DEFAULT_PRESET = "paper"


def preset(name: str) -> ModelConfig:
    """Returns the named model preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"Unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.") from None


def replace(config: Any, **changes: Any) -> Any:
    """dataclasses.replace that skips None values (flags the user did not give)."""
    changes = {key: value for key, value in changes.items() if value is not None}
    return dataclasses.replace(config, **changes) if changes else config
