"""`evaluate` and `intensity` end to end on a tiny model trained on the toy set."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import run_cli

from affinegan_tf.errors import UserError
from affinegan_tf.evaluation import metrics

REPO = Path(__file__).resolve().parents[1]
KINDS = ["complete", "incomplete", "periodic", "shuffled"]
TRAINING_STEPS = 80


def held_out(toy_data: Path, kind: str) -> Path:
    """The toy set's held-out video of one sequence kind (names are <kind>_<number>)."""
    return next(
        path for path in sorted((toy_data / "test" / "img").iterdir()) if path.name.startswith(kind)
    )


def fresh_names() -> None:
    """Restarts Keras's automatic names so a run saved in this process loads back in it."""
    import keras

    keras.backend.clear_session()


@pytest.fixture(scope="session")
def trained_run(toy_data, tmp_path_factory) -> Path:
    """The tiny preset trained for a few dozen steps on the toy set through training.fit."""
    from affinegan_tf.recipes import resolve_config
    from affinegan_tf.training import fit

    config = resolve_config(
        str(toy_data),
        preset_name="tiny",
        model_overrides={"local_discriminator": "off"},  # a faster step; not under test here
        train_overrides={
            "steps": TRAINING_STEPS,
            "learning_rate": 1e-3,
            "checkpoint_every": 10_000,
            "log_every": 1_000,
        },
    )
    run_dir = tmp_path_factory.mktemp("evaluation") / "run"
    fresh_names()
    fit(config, run_dir)
    return run_dir


@pytest.fixture(scope="session")
def loaded_model(trained_run):
    from affinegan_tf.checkpoints import load_model

    fresh_names()
    return load_model(trained_run)


@pytest.fixture(scope="session")
def report(trained_run, toy_data, tmp_path_factory):
    from affinegan_tf.evaluation.evaluate import evaluate_model

    out_dir = tmp_path_factory.mktemp("report") / "report"
    fresh_names()
    return evaluate_model(trained_run, toy_data, out_dir)


@pytest.mark.slow  # uses the session's trained run and report: ~95 s in all
def test_evaluate_reports_every_row_and_writes_the_report_folder(report, toy_data):
    out_dir = Path(report["report_dir"])
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "contact_sheet.png",
        "gifs",
        "metrics.json",
        "summary.md",
    ]
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]  # no temp left
    saved = json.loads((out_dir / "metrics.json").read_text())  # strict JSON: no NaN
    assert saved["rows"] == report["rows"]
    assert report["videos"] == 4 and len(report["per_video"]) == 4  # the held-out test split
    assert sorted(video["kind"] for video in report["per_video"]) == KINDS
    for row in ("generated", "real", "copy_input"):
        for name in ("acd_identity", "acd_consistency", "acd_ground_truth"):
            assert report["rows"][row][name] is not None and report["rows"][row][name] >= 0
        assert report["faces"][row]["frames"] == 4 * 16
    generated = report["rows"]["generated"]
    assert 0 < generated["l1"] < 1 and 0 < generated["ssim"] <= 1 and generated["psnr"] > 5
    # Spearman of inferred vs true intensity, per kind, from intensities.csv.
    assert sorted(report["intensity"]["spearman_by_kind"]) == KINDS
    for entry in report["intensity"]["spearman_by_kind"].values():
        assert entry["videos"] == 1
        assert entry["spearman"] is None or -1 <= entry["spearman"] <= 1
    assert sorted(report["by_kind"]) == KINDS

    sheet = cv2.imread(str(out_dir / "contact_sheet.png"))
    assert sheet.shape[0] == 8 * (64 + 4)  # real and generated rows for 4 videos
    summary = (out_dir / "summary.md").read_text()
    for text in ("real videos (reference)", "copy the input (baseline)", "shuffled"):
        assert text in summary
    assert len(list((out_dir / "gifs").glob("*.gif"))) == 5  # 4 videos and the overview


@pytest.mark.slow  # uses the session's trained run and report: ~95 s in all
def test_reference_rows_follow_from_their_definitions(report):
    rows = report["rows"]
    # The real videos against themselves: ACD-G is 0 by definition.
    assert rows["real"]["acd_ground_truth"] == 0.0
    # Copying the input: no identity change, no motion, and ACD-G equal to the real ACD-I.
    assert rows["copy_input"]["acd_identity"] == 0.0
    assert rows["copy_input"]["acd_consistency"] == 0.0
    assert rows["copy_input"]["acd_ground_truth"] == pytest.approx(rows["real"]["acd_identity"])
    # The toy smile moves dlib embeddings like a real one does (EVALUATION.md: ~0.2-0.35).
    assert 0.1 < rows["real"]["acd_identity"] < 0.6


@pytest.mark.slow  # uses the session's trained run and report: ~95 s in all
def test_real_row_matches_embeddings_computed_here(report, toy_data):
    from affinegan_tf.data.video import read_frames
    from affinegan_tf.evaluation.embeddings import embed_faces

    video = report["per_video"][0]
    frames = read_frames(toy_data / "test" / "img" / video["name"])  # already 64 x 64
    vectors = embed_faces(frames).vectors
    assert video["real"]["acd_identity"] == pytest.approx(
        metrics.acd_identity(vectors, vectors[0]).value
    )
    assert video["real"]["acd_consistency"] == pytest.approx(metrics.acd_consistency(vectors).value)


@pytest.mark.slow  # uses the session's trained run and report: ~95 s in all
def test_intensities_match_the_model_and_the_truth_file(
    report, trained_run, loaded_model, toy_data
):
    from affinegan_tf.data.pixels import to_model_range
    from affinegan_tf.data.video import read_frames
    from affinegan_tf.run_folder import intensity_apex

    model, _ = loaded_model
    video = next(v for v in report["per_video"] if v["kind"] == "complete")
    frames = read_frames(toy_data / "test" / "img" / video["name"])
    faces = to_model_range(frames)
    # Calibrated: the raw intensities divided by the apex the run recorded while training.
    apex = intensity_apex(trained_run)
    assert apex != 1.0 and report["intensity_apex"] == apex
    expected = model.infer_intensities(faces[:1], faces).numpy() / apex
    np.testing.assert_allclose(video["intensities"], expected, rtol=1e-5, atol=1e-5)
    assert video["intensities"][0] == pytest.approx(0.0, abs=1e-6)
    with open(toy_data / "intensities.csv") as handle:
        rows = [line.split(",") for line in handle.read().splitlines()[1:]]
    truth = [float(row[5]) for row in rows if row[0] == "test" and row[1] == video["name"]]
    assert video["true_intensities"] == pytest.approx(truth)
    assert video["spearman"] == pytest.approx(
        metrics.spearman(np.asarray(video["intensities"][1:]), np.asarray(truth[1:]))
    )


@pytest.mark.slow  # uses the session's trained run and report: ~95 s in all
def test_intensity_curve_relative_to_the_first_frame_or_a_given_neutral(
    trained_run, loaded_model, toy_data, tmp_path
):
    from affinegan_tf.data.pixels import to_model_range
    from affinegan_tf.data.video import read_frames
    from affinegan_tf.evaluation.curves import format_curve, intensity_curve
    from affinegan_tf.run_folder import intensity_apex

    model, _ = loaded_model
    video = held_out(toy_data, "periodic")
    frames = read_frames(video)
    fresh_names()
    curve = intensity_curve(trained_run, video, plot_path=tmp_path / "curve.png")
    assert [point["frame"] for point in curve] == list(range(16))
    expected = model.infer_intensities(to_model_range(frames[:1]), to_model_range(frames))
    expected = expected.numpy() / intensity_apex(trained_run)  # calibrated: 1 = the apex
    np.testing.assert_allclose([p["intensity"] for p in curve], expected, rtol=1e-5, atol=1e-5)
    plot = cv2.imread(str(tmp_path / "curve.png"))
    assert plot is not None and plot.shape == (400, 720, 3)
    assert "apex: frame" in format_curve(curve)

    neutral_file = sorted(video.iterdir())[3]
    fresh_names()
    by_index = intensity_curve(trained_run, video, neutral="3")
    fresh_names()
    by_file = intensity_curve(trained_run, video, neutral=neutral_file)
    assert by_index[3]["intensity"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(
        [p["intensity"] for p in by_index], [p["intensity"] for p in by_file], atol=1e-5
    )


def test_non_square_video_frames_are_centre_cropped_like_the_data_pipeline(
    trained_run, loaded_model, toy_data, tmp_path
):
    """A 64x96 copy of a video (32 px bands added left and right) reads back as the original."""
    from affinegan_tf.evaluation.curves import read_video_frames

    source = held_out(toy_data, "complete")
    wide = tmp_path / "wide"
    wide.mkdir()
    for path in sorted(source.iterdir()):
        image = cv2.imread(str(path))
        cv2.imwrite(str(wide / (path.stem + ".png")), cv2.copyMakeBorder(image, 0, 0, 16, 16, 0))
    frames, names = read_video_frames(wide, 64)
    original, _ = read_video_frames(source, 64)
    assert frames.shape == (16, 64, 64, 3) and names[0] == "frame_0001.png"
    assert np.abs(frames.astype(int) - original.astype(int)).mean() < 2  # JPEG vs PNG only


@pytest.mark.slow  # uses the session's trained run and report: ~95 s in all
def test_frames_without_a_face_are_counted_in_the_report(trained_run, toy_data, tmp_path):
    """A plain folder holding one video with a blank frame, through the CLI in a subprocess."""
    videos = tmp_path / "videos"
    video = videos / "with_blank"
    shutil.copytree(held_out(toy_data, "complete"), video)
    blank = sorted(video.iterdir())[5]
    cv2.imwrite(str(blank), np.zeros((64, 64, 3), np.uint8))
    out_dir = tmp_path / "report"
    result = run_cli(
        *("evaluate", "--model", str(trained_run), "--data", str(videos)),
        *("--out", str(out_dir), "--json"),
        cwd=tmp_path,
        timeout=300,
    )
    printed = json.loads(result.stdout)
    assert printed == json.loads((out_dir / "metrics.json").read_text())
    assert printed["videos"] == 1 and printed["intensity"] is None  # no intensities.csv here
    assert printed["faces"]["real"] == {"frames": 16, "missing": 1}
    pairs = printed["pairs"]["real"]
    # Frame 5 leaves 1 of 15 identity pairs, 15 of 120 frame pairs out: counted, not hidden.
    assert pairs["acd_identity"] == {"pairs": 14, "skipped_pairs": 1}
    assert pairs["acd_consistency"] == {"pairs": 105, "skipped_pairs": 15}
    assert math.isfinite(printed["rows"]["real"]["acd_identity"])
    assert "frames without a face" in (out_dir / "summary.md").read_text()


@pytest.mark.slow  # uses the session's trained run and report: ~95 s in all
def test_intensity_cli_prints_json(trained_run, toy_data, tmp_path):
    result = run_cli(
        *("intensity", "--model", str(trained_run)),
        *("--video", str(held_out(toy_data, "shuffled")), "--json"),
        *("--plot", str(tmp_path / "plot.png")),
        cwd=tmp_path,
        timeout=300,
    )
    curve = json.loads(result.stdout)
    assert [sorted(point) for point in curve] == [["frame", "intensity"]] * 16
    assert curve[0] == {"frame": 0, "intensity": pytest.approx(0.0, abs=1e-6)}
    assert (tmp_path / "plot.png").is_file()


def test_bad_model_paths_are_user_errors(tmp_path, toy_data):
    from affinegan_tf.evaluation.curves import intensity_curve
    from affinegan_tf.evaluation.evaluate import evaluate_model

    exported = tmp_path / "model.tflite"
    exported.write_bytes(b"not a run folder")
    with pytest.raises(UserError, match="run folder"):
        intensity_curve(exported, held_out(toy_data, "complete"))
    with pytest.raises(UserError, match="does not exist"):
        evaluate_model(tmp_path / "missing", toy_data)


def test_held_out_scores_rank_the_truth_and_price_copying(tmp_path):
    """held_out_scores on a toy set with a stand-in model whose intensities are the truth."""
    from affinegan_tf.evaluation import held_out
    from affinegan_tf.toy import write_toy_dataset

    data = tmp_path / "toy"
    write_toy_dataset(data, num_videos=4, size=16, seed=3, test_videos=4, frames_per_video=5)
    truth = held_out.read_true_intensities(data, split="test")
    frames_by_first = {}
    for name, (_, values) in truth.items():
        video_frames, _ = held_out.read_video_frames(data / "test" / "img" / name, 16)
        frames_by_first[video_frames[0].tobytes()] = (video_frames, values)

    class Oracle:
        """Infers the true intensities and generates the real frames (at the true ones)."""

        config = type("Config", (), {"image_size": 16})()
        inference_generator = None

    def infer(model, neutral, frames, apex=1.0):
        _, values = frames_by_first[neutral.tobytes()]
        return np.asarray([values[index] for index in range(1, len(frames) + 1)]) * 2.0 / apex

    def generate(generator, face, intensities, apex=1.0):
        first = np.round((np.asarray(face[0]) + 1.0) * 127.5).astype(np.uint8).tobytes()
        video_frames, _ = frames_by_first[first]
        return video_frames.astype(np.float32) / 127.5 - 1.0

    original = held_out.infer_frame_intensities, held_out.generate_frames_from_model_range
    held_out.infer_frame_intensities, held_out.generate_frames_from_model_range = infer, generate
    try:
        scores = held_out.held_out_scores(Oracle(), data, apex=2.0)
    finally:
        held_out.infer_frame_intensities, held_out.generate_frames_from_model_range = original
    assert scores["videos"] == 4
    assert scores["spearman"]["all"] == pytest.approx(1.0)
    assert scores["apex_inferred"] == [pytest.approx(1.0)]  # the complete video's last frame
    assert scores["l1_a0"] < 2e-3 and scores["l1_generated"] < 2e-3
    assert scores["l1_copy"] > 0.005
