"""`affinegan-tf intensity`: the intensity the model infers for every frame of a video.

The method's unsupervised intensity estimator on its own: a_t = |<E0(I_t) - E0(I_0), Ed(I_0)>| /
<Ed(I_0), Ed(I_0)> for each frame I_t, relative to the first frame or a given neutral frame. Frames
are made square and resized exactly as the data pipeline does (`square_resize`: centre crop, then
resize to the model size). Reported intensities are calibrated (calibration.py): the raw value
divided by the model's apex, so a frame showing the full expression reads about 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from affinegan_tf.calibration import UNCALIBRATED_APEX, to_calibrated
from affinegan_tf.checkpoints import load_model
from affinegan_tf.data import media_files
from affinegan_tf.data.images import read_image
from affinegan_tf.data.square import square_resize
from affinegan_tf.data.video import read_frames_at
from affinegan_tf.errors import UserError
from affinegan_tf.evaluation.plots import line_plot, write_png
from affinegan_tf.run_folder import CONFIG_FILE, intensity_apex, is_run_folder


def load_trained_model(model_path: str | Path):
    """The trained AffineGAN of a run folder, or a UserError saying what to pass instead.

    Intensity inference needs the encoders E0 and Ed, which exported models (SavedModel, TFLite,
    ONNX) do not expose, so only run folders are accepted.

    Returns:
        (model, run_config).
    """
    path = Path(model_path)
    if not path.exists():
        raise UserError(
            f"Model {path} does not exist. Pass the run folder `affinegan-tf fit` wrote."
        )
    if path.is_file() or not is_run_folder(path):
        raise UserError(
            f"{path} is not a training run folder (no {CONFIG_FILE}). Intensity inference and "
            "evaluation need the encoders, which exported models do not include: pass the run "
            "folder that `affinegan-tf fit --out` wrote."
        )
    return load_model(path)


def read_video_frames(video: str | Path, image_size: int) -> tuple[np.ndarray, list[str]]:
    """Every frame of a video file, frame folder or folder of photos, square at the model size.

    Video frames are resized one by one as they are decoded; each photo of a folder is made
    square on its own (centre crop), so photos of different shapes are never stretched.

    Returns:
        (uint8 [T, S, S, 3], a name per frame: file names for folders, "frame N" for videos).
    """
    path = Path(video)
    if path.is_dir():
        files = media_files.list_frame_files(path)
        if not files:
            raise UserError(
                f"{path} holds no frame or photo files ({'/'.join(media_files.IMAGE_EXTENSIONS)})."
            )
        frames = np.stack([square_resize(read_image(file), image_size) for file in files])
        return frames, [file.name for file in files]
    if path.is_file() and media_files.is_image_file(path):
        return square_resize(read_image(path), image_size)[np.newaxis], [path.name]
    frames = read_frames_at(path, transform=lambda frame: square_resize(frame, image_size))
    return frames, [f"frame {index}" for index in range(len(frames))]


def _neutral_frame(neutral: str | Path | None, frames: np.ndarray, image_size: int) -> np.ndarray:
    if neutral is None:
        return frames[0]
    text = str(neutral)
    if text.isdigit():
        index = int(text)
        if index >= len(frames):
            raise UserError(f"--neutral {index}: the video has only {len(frames)} frames.")
        return frames[index]
    return square_resize(read_image(text), image_size)


def infer_frame_intensities(
    model, neutral: np.ndarray, frames: np.ndarray, apex: float = UNCALIBRATED_APEX
) -> np.ndarray:
    """Inferred intensity of each frame relative to `neutral` (the model's IntensityEstimator).

    Args:
        model: A trained AffineGAN (intensity "affine" or "mlp").
        neutral: uint8 [S, S, 3] at the model size.
        frames: uint8 [N, S, S, 3] at the model size.
        apex: The model's raw intensity at the apex (`run_folder.intensity_apex`); the result is
            divided by it (1: the raw scale).

    Returns:
        float32 [N], calibrated: what `rendering.generate_frames` takes with the same apex.
    """
    estimator = model.inference_estimator
    if not estimator.reads_images:
        raise UserError(
            "This model was trained with temporal labels (intensity = temporal, a_t = t / T): it "
            "has no intensity estimator. Use a model trained with --intensity affine or mlp."
        )
    return to_calibrated(estimator.from_frames(neutral, frames), float(apex))


def intensity_curve(
    model_path: str | Path,
    video: str | Path,
    neutral: str | Path | None = None,
    plot_path: str | Path | None = None,
) -> list[dict]:
    """The intensity inferred for every frame of a video.

    Args:
        model_path: A training run folder.
        video: A video file, a folder of frames, a folder of photos, or one photo.
        neutral: The neutral frame: an image file, or a frame index; default the first frame.
        plot_path: Where to write a PNG plot of intensity against frame index, or None.

    Returns:
        [{"frame": index, "intensity": value}, ...] in frame order; calibrated intensities (1 =
        the apex of the model's training videos; the raw scale for runs that recorded no apex).
    """
    model, run_config = load_trained_model(model_path)
    image_size = run_config.model.image_size
    frames, names = read_video_frames(video, image_size)
    neutral_frame = _neutral_frame(neutral, frames, image_size)
    intensities = infer_frame_intensities(model, neutral_frame, frames, intensity_apex(model_path))
    curve = [{"frame": index, "intensity": float(value)} for index, value in enumerate(intensities)]
    if plot_path is not None:
        title = f"Inferred intensity: {Path(video).name}"
        image = line_plot(range(len(curve)), intensities, title, "frame", "intensity")
        write_png(image, plot_path)
    return curve


def format_curve(curve: list[dict], width: int = 40) -> str:
    """A text table of a curve, one bar per frame, and the apex frame."""
    if not curve:
        return "(no frames)"
    values = np.asarray([point["intensity"] for point in curve], np.float64)
    largest = float(values.max()) if values.size and values.max() > 0 else 1.0
    lines = ["frame  intensity"]
    for point in curve:
        bar = "#" * int(round(width * max(point["intensity"], 0.0) / largest))
        lines.append(f"{point['frame']:5d}  {point['intensity']:9.4f}  {bar}")
    apex = int(np.argmax(values))
    lines.append(f"apex: frame {curve[apex]['frame']} (intensity {values[apex]:.4f})")
    return "\n".join(lines)
