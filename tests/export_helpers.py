"""Shared, built-once artefacts for the export and generation tests.

pytest fixtures defined in a test module are private to it, so the expensive things (a tiny run
folder, its full export) are built here once per test process and handed to each module's
session fixtures. Every test file that needs them calls these functions with its
`tmp_path_factory`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

_BUILT: dict[str, object] = {}


def fresh_names() -> None:
    """Restarts Keras's automatic layer names (affine_gan, affine_gan_1, ...).

    checkpoints.py keys variables by path, which starts with the model's automatic name, so a run
    folder only loads back in a process where the loading model gets the same name as the saving
    one did. The CLI always runs in a fresh process; tests call this before saving and loading.
    """
    import keras

    keras.backend.clear_session()


def _once(key: str, build):
    if key not in _BUILT:
        _BUILT[key] = build()
    return _BUILT[key]


def write_run_folder(run_dir: Path, preset_name: str = "tiny", **model_changes) -> Path:
    """A training run folder (config.json + one checkpoint) of an untrained model."""
    import keras

    from affinegan_tf.checkpoints import TrainingCheckpoint
    from affinegan_tf.config import PRESETS, RunConfig
    from affinegan_tf.gan import AffineGAN
    from affinegan_tf.run_folder import CONFIG_FILE

    model_config = dataclasses.replace(
        PRESETS[preset_name], local_discriminator="off", **model_changes
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    fresh_names()
    (run_dir / CONFIG_FILE).write_text(RunConfig(model=model_config, preset=preset_name).to_json())
    model = AffineGAN(model_config, use_local_discriminator=False)
    model.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    TrainingCheckpoint(model, run_dir).save()
    return run_dir


def tiny_run(tmp_path_factory) -> Path:
    """The `tiny` preset, untrained, saved as a run folder."""
    return _once("tiny_run", lambda: write_run_folder(tmp_path_factory.mktemp("tiny") / "run"))


def tiny_model(tmp_path_factory):
    """(AffineGAN, RunConfig) loaded back from `tiny_run`: the Keras reference."""
    from affinegan_tf.checkpoints import load_model

    def build():
        run_dir = tiny_run(tmp_path_factory)
        fresh_names()
        return load_model(run_dir)

    return _once("tiny_model", build)


def tiny_export(tmp_path_factory) -> tuple[Path, dict]:
    """(folder, manifest) of `affinegan-tf export` of `tiny_run` to all formats, with fp16."""

    def build():
        from affinegan_tf.export.exporter import export_model

        out = tmp_path_factory.mktemp("exported") / "tiny"
        run_dir = tiny_run(tmp_path_factory)
        fresh_names()
        manifest = export_model(run_dir, out, fp16=True)
        return out, manifest

    return _once("tiny_export", build)


def face_image(size: int = 80, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 RGB test image (a bright disc on a gradient, plus noise)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) / size
    disc = ((rows - 0.5) ** 2 + (cols - 0.5) ** 2 < 0.1).astype(np.float32)
    image = np.stack([rows, cols, disc], axis=-1) * 180 + 40
    noise = np.random.default_rng(seed).integers(-15, 16, size=image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def write_photo(path: Path, size: int = 80, seed: int = 0) -> Path:
    """Saves `face_image` as a PNG/JPEG photo file."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, face_image(size, seed))
    return path
