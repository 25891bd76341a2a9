"""The evaluation metrics against hand-computed values; the OpenCV plots; dlib embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from affinegan_tf.evaluation import metrics
from affinegan_tf.evaluation.plots import contact_sheet, line_plot, nice_ticks, write_png

NAN = [math.nan, math.nan]

# Three 2-D "embeddings" of a video whose distances are easy to do by hand:
# |f1 - f0| = 5, |f2 - f0| = 10, |f2 - f1| = 5.
VIDEO = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
REAL = np.array([[0.0, 0.0], [0.0, 4.0], [6.0, 0.0]])


def test_acd_identity_is_the_mean_distance_of_frames_after_the_first_to_the_input():
    result = metrics.acd_identity(VIDEO, VIDEO[0])
    assert result == (7.5, 2, 0)  # (5 + 10) / 2; frame 0 (the input itself) is not a pair
    assert metrics.acd_identity(VIDEO, np.array([3.0, 0.0])).value == pytest.approx(
        (4.0 + math.hypot(3, 8)) / 2
    )


def test_acd_consistency_is_the_mean_over_all_frame_pairs():
    assert metrics.acd_consistency(VIDEO) == (pytest.approx(20 / 3), 3, 0)
    assert metrics.acd_consistency(VIDEO[:1]).pairs == 0


def test_acd_ground_truth_compares_frame_t_with_real_frame_t():
    # t = 1: |(3,4) - (0,4)| = 3; t = 2: |(6,8) - (6,0)| = 8.
    assert metrics.acd_ground_truth(VIDEO, REAL) == (5.5, 2, 0)
    assert metrics.acd_ground_truth(REAL, REAL).value == 0.0


def test_copying_the_input_gives_zero_identity_and_consistency_and_real_acd_i_as_acd_g():
    copied = np.repeat(REAL[:1], 3, axis=0)
    assert metrics.acd_identity(copied, REAL[0]).value == 0.0
    assert metrics.acd_consistency(copied).value == 0.0
    real_identity = metrics.acd_identity(REAL, REAL[0]).value
    assert metrics.acd_ground_truth(copied, REAL).value == real_identity == 5.0


def test_frames_without_a_face_are_counted_not_silently_dropped():
    video = VIDEO.copy()
    video[1] = NAN
    assert metrics.acd_identity(video, video[0]) == (10.0, 1, 1)
    assert metrics.acd_consistency(video) == (10.0, 1, 2)  # only the pair (0, 2) is usable
    assert metrics.acd_ground_truth(video, REAL) == (8.0, 1, 1)
    nothing = metrics.acd_identity(video, np.array(NAN))
    assert math.isnan(nothing.value) and nothing.pairs == 0 and nothing.skipped_pairs == 2


def test_mean_of_means_weighs_videos_equally_and_sums_counts():
    means = [
        metrics.MeanDistance(1.0, 10, 0),
        metrics.MeanDistance(3.0, 2, 1),
        metrics.MeanDistance(math.nan, 0, 4),
    ]
    assert metrics.mean_of_means(means) == (2.0, 12, 5)


def test_l1_and_psnr_by_hand():
    black = np.zeros((16, 16, 3), np.uint8)
    grey = np.full((16, 16, 3), 10, np.uint8)
    assert metrics.l1_distance(black, grey) == pytest.approx(10 / 255)
    assert metrics.psnr(black, grey) == pytest.approx(10 * math.log10(255**2 / 100))
    assert metrics.psnr(grey, grey) == metrics.PSNR_CAP_DB


def test_ssim_of_identical_images_is_one_and_of_flat_images_is_the_luminance_term():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    # Flat images have zero variance: SSIM reduces to (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 100.0, 150.0, (0.01 * 255) ** 2
    flat_a = np.full((20, 20), 100, np.uint8)
    flat_b = np.full((20, 20), 150, np.uint8)
    assert metrics.ssim(flat_a, flat_b) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))


def test_ssim_matches_tensorflow():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    first = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, first.shape)
    second = np.clip(first.astype(int) + noise, 0, 255).astype(np.uint8)
    expected = float(tf.image.ssim(tf.constant(first), tf.constant(second), max_val=255))
    assert metrics.ssim(first, second) == pytest.approx(expected, abs=1e-4)


def test_pixel_metrics_skip_the_input_frame():
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    generated = frames.copy()
    generated[0] = 255  # frame 0 is the input: not compared
    values = metrics.pixel_metrics(generated, frames)
    assert values == {"l1": 0.0, "psnr": metrics.PSNR_CAP_DB, "ssim": pytest.approx(1.0)}


def test_spearman_per_video_and_per_kind():
    assert metrics.spearman([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.9]) == pytest.approx(1.0)
    assert metrics.spearman([4, 3, 2, 1], [0.1, 0.2, 0.3, 0.9]) == pytest.approx(-1.0)
    assert math.isnan(metrics.spearman([1, 1, 1], [0.1, 0.2, 0.3]))
    table = metrics.spearman_by_kind(
        [("shuffled", 0.5), ("complete", 1.0), ("shuffled", 0.1), ("periodic", math.nan)]
    )
    assert list(table) == ["complete", "periodic", "shuffled"]
    assert table["shuffled"] == {"spearman": pytest.approx(0.3), "videos": 2, "undefined": 0}
    assert math.isnan(table["periodic"]["spearman"]) and table["periodic"]["undefined"] == 1
    # The overall figure every report prints: NaNs (constant videos) left out, NaN only if all are.
    assert metrics.mean_defined([0.5, math.nan, 0.1]) == pytest.approx(0.3)
    assert math.isnan(metrics.mean_defined([math.nan])) and math.isnan(metrics.mean_defined([]))


def test_spearman_with_ties_matches_hand_computed_average_ranks():
    # inferred ranks (ties averaged): [1.5, 1.5, 3, 4] -> 0-based [0.5, 0.5, 2, 3]; true ranks
    # [0, 1, 2, 3]; Pearson of the ranks = 4.5 / sqrt(4.5 * 5) = 0.9487.
    value = metrics.spearman([0.2, 0.2, 0.5, 0.9], [0.1, 0.2, 0.3, 0.4])
    assert value == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    inferred, true = rng.integers(0, 5, 30).astype(float), rng.random(30)
    expected = scipy_stats.spearmanr(inferred, true).statistic
    assert metrics.spearman(inferred, true) == pytest.approx(expected)


# ----------------------------------------------------------------------------- plots


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 63, count=8) == [0, 10, 20, 30, 40, 50, 60, 70]


def test_line_plot_draws_axes_line_and_labels(tmp_path):
    import cv2

    values = np.sin(np.linspace(0, 3, 30)) ** 2
    values[10] = math.nan  # breaks the line, does not crash
    image = line_plot(range(30), values, "Inferred intensity", "frame", "intensity")
    assert image.shape == (400, 720, 3) and image.dtype == np.uint8
    blue = (image[..., 2] > 150) & (image[..., 0] < 120)
    assert blue.sum() > 200  # the line
    assert (image.sum(axis=2) == 0).sum() > 500  # black axes and text
    path = write_png(image, tmp_path / "plot.png")
    reread = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(reread, image)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
    assert path.stat().st_mode & 0o044  # readable by others like any plainly written file
    with_truth = line_plot(
        range(30), values, "t", "frame", "a", label="inferred", extra_series=[("true", values / 2)]
    )
    orange = (with_truth[..., 0] > 180) & (with_truth[..., 2] < 80)
    assert orange.sum() > 200  # the second line and its legend entry


def test_contact_sheet_places_frames_in_rows():
    real = np.full((5, 16, 16, 3), 200, np.uint8)
    generated = np.full((5, 16, 16, 3), 50, np.uint8)
    sheet = contact_sheet([("real", real), ("generated", generated)], columns=3, label_width=40)
    assert sheet.shape == (2 * 20, 40 + 3 * 20, 3)
    assert (sheet[2:18, 42:58] == 200).all() and (sheet[22:38, 42:58] == 50).all()


# ----------------------------------------------------------------------------- embeddings


def test_embeddings_count_frames_without_a_face(shared_data):
    from affinegan_tf.data.square import square_resize
    from affinegan_tf.data.video import read_frames
    from affinegan_tf.evaluation.embeddings import embed_faces, upsample_count

    assert [upsample_count(size, size) for size in (64, 128, 256)] == [2, 1, 0]
    frames = square_resize(read_frames(shared_data / "single_face.mp4", max_frames=4), 64)
    frames = np.concatenate([frames, np.zeros((1, 64, 64, 3), np.uint8)])
    embeddings = embed_faces(frames)
    assert embeddings.found.tolist() == [True, True, True, True, False]
    assert embeddings.missing == 1 and np.isnan(embeddings.vectors[4]).all()
    # Same person: within dlib's same-person threshold; deterministic.
    assert np.linalg.norm(embeddings.vectors[1] - embeddings.vectors[0]) < 0.6
    np.testing.assert_array_equal(embed_faces(frames[:1]).vectors, embeddings.vectors[:1])
