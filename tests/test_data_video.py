"""Decoding images, videos and frame folders into uint8 RGB (data.images, video, square)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from test_data_fixtures import (
    coloured_frames,
    frame_number,
    write_frame_folder,
    write_gif,
    write_video,
)

from affinegan_tf.data.images import read_image
from affinegan_tf.data.media_files import natural_sort_key
from affinegan_tf.data.square import prepare_photo, square_resize
from affinegan_tf.data.video import read_frames, select_frames
from affinegan_tf.errors import UserError

# ----------------------------------------------------------------------------- single images


def test_pure_red_png_comes_out_red_not_blue(tmp_path):
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), np.full((8, 8, 3), (0, 0, 255), np.uint8))  # OpenCV writes BGR
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (8, 8, 3)
    assert image[0, 0].tolist() == [255, 0, 0]


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (4, 1))
    cv2.imwrite(str(path), grey)
    image = read_image(path)
    assert image.shape == (4, 25, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], grey)


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    path = tmp_path / "rgba.png"
    Image.fromarray(np.full((6, 6, 4), (10, 200, 30, 0), np.uint8), "RGBA").save(path)
    image = read_image(path)
    assert image.shape == (6, 6, 3)
    assert image[0, 0].tolist() == [10, 200, 30]


def test_grey_with_alpha_becomes_grey_rgb(tmp_path):
    path = tmp_path / "la.png"
    Image.new("LA", (5, 5), (90, 10)).save(path)
    assert read_image(path)[0, 0].tolist() == [90, 90, 90]


def test_16_bit_png_is_scaled_not_truncated(tmp_path):
    path = tmp_path / "deep.png"
    deep = np.zeros((2, 3, 3), np.uint16)
    deep[0, 0] = (65535, 257 * 100, 0)  # BGR
    cv2.imwrite(str(path), deep)
    image = read_image(path)
    assert image.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 100, 255]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    red, green, blue = read_image(path)[4, 8].tolist()
    assert red > 230 and green < 25 and blue < 25


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    photo = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    photo.save(path, exif=exif)
    assert read_image(path).shape == (40, 20, 3)


def test_not_an_image_names_the_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(UserError, match="notes.jpg"):
        read_image(path)


def test_missing_image_names_the_file(tmp_path):
    with pytest.raises(UserError, match="nowhere.png.*does not exist"):
        read_image(tmp_path / "nowhere.png")


# ----------------------------------------------------------------------------- frame sequences


def test_natural_sort_key_orders_numbers_by_value():
    names = ["frame10.png", "frame2.png", "frame1.png", "Frame3.png", "frame02b.png"]
    assert sorted(names, key=natural_sort_key) == [
        "frame1.png",
        "frame2.png",
        "frame02b.png",
        "Frame3.png",
        "frame10.png",
    ]


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".webp"])
def test_frame_folder_in_natural_order(tmp_path, extension):
    frames = coloured_frames(6)
    # Written out of order, with names that sort wrongly as plain strings (frame10 < frame2).
    names = ["frame1", "frame2", "frame3", "frame10", "frame11", "frame20"]
    order = [3, 0, 5, 1, 4, 2]
    write_frame_folder(tmp_path / "video", frames[order], extension, [names[i] for i in order])
    decoded = read_frames(tmp_path / "video")
    assert decoded.shape == (6, 48, 64, 3) and decoded.dtype == np.uint8
    assert [frame_number(frame) for frame in decoded] == list(range(6))


@pytest.mark.parametrize(
    ("name", "fourcc"),
    [("clip.mp4", "mp4v"), ("clip.avi", "MJPG"), ("clip.mov", "mp4v"), ("clip.mkv", "MJPG")],
)
def test_video_files_decode_in_order_and_in_rgb(tmp_path, name, fourcc):
    path = write_video(tmp_path / name, coloured_frames(5), fourcc)
    decoded = read_frames(path)
    assert decoded.shape == (5, 48, 64, 3)
    assert [frame_number(frame) for frame in decoded] == list(range(5))
    assert abs(float(decoded[0, ..., 2].mean()) - 200) < 12  # blue stays blue (RGB, not BGR)


def test_gif_decodes(tmp_path):
    path = write_gif(tmp_path / "clip.gif", coloured_frames(4))
    decoded = read_frames(path)
    assert decoded.shape == (4, 48, 64, 3)
    assert [frame_number(frame) for frame in decoded] == list(range(4))


def test_select_frames_keeps_the_first_and_spaces_evenly():
    assert select_frames(10, 4) == [0, 3, 6, 9]
    assert select_frames(3, 8) == [0, 1, 2]
    assert select_frames(5, None) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("as_video", [False, True])
def test_max_frames_subsamples_including_the_neutral(tmp_path, as_video):
    frames = coloured_frames(7)
    if as_video:
        source = write_video(tmp_path / "clip.avi", frames, "MJPG")
    else:
        write_frame_folder(tmp_path / "clip", frames)
        source = tmp_path / "clip"
    decoded = read_frames(source, max_frames=3)
    assert [frame_number(frame) for frame in decoded] == [0, 3, 6]


def test_frames_of_another_size_are_resized_to_the_first(tmp_path):
    write_frame_folder(tmp_path / "video", coloured_frames(2, 48, 64))
    write_frame_folder(tmp_path / "video", coloured_frames(3, 96, 128)[2:], names=["frame2"])
    decoded = read_frames(tmp_path / "video")
    assert decoded.shape == (3, 48, 64, 3)
    assert frame_number(decoded[2]) == 2


def test_real_phone_clip(shared_data):
    decoded = read_frames(shared_data / "single_face.mp4")
    assert decoded.shape == (72, 360, 640, 3)
    subsampled = read_frames(shared_data / "single_face.mp4", max_frames=16)
    assert subsampled.shape == (16, 360, 640, 3)
    np.testing.assert_array_equal(subsampled[0], decoded[0])
    np.testing.assert_array_equal(subsampled[-1], decoded[-1])


# ----------------------------------------------------------------------------- bad videos


def test_garbage_mp4_names_the_file(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x01garbage, not a video")
    with pytest.raises(UserError, match="broken.mp4"):
        read_frames(path)


def test_truncated_avi_is_reported(tmp_path):
    path = write_video(tmp_path / "cut.avi", coloured_frames(30, 32, 32), "MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(UserError, match="cut.avi.*truncated"):
        read_frames(path)


def test_truncated_mp4_is_reported(tmp_path):
    path = write_video(tmp_path / "cut.mp4", coloured_frames(20, 32, 32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.mp4"):
        read_frames(path)


def test_one_frame_video_is_too_short(tmp_path):
    path = write_video(tmp_path / "still.mp4", coloured_frames(1))
    with pytest.raises(UserError, match="still.mp4 has 1 frame;.*at least 2"):
        read_frames(path)


def test_one_frame_folder_is_too_short(tmp_path):
    write_frame_folder(tmp_path / "single", coloured_frames(1))
    with pytest.raises(UserError, match="single has 1 frame"):
        read_frames(tmp_path / "single")


def test_bad_frame_file_names_the_frame(tmp_path):
    write_frame_folder(tmp_path / "video", coloured_frames(3))
    (tmp_path / "video" / "frame1.png").write_bytes(b"broken")
    with pytest.raises(UserError, match="frame1.png"):
        read_frames(tmp_path / "video")


def test_not_a_video_extension(tmp_path):
    path = tmp_path / "clip.txt"
    path.write_text("x")
    with pytest.raises(UserError, match="clip.txt is not a video"):
        read_frames(path)


# ----------------------------------------------------------------------------- squaring


def _portrait_image() -> np.ndarray:
    """40 wide, 80 tall: red top quarter, blue bottom quarter, green middle half."""
    image = np.zeros((80, 40, 3), np.uint8)
    image[:20] = (255, 0, 0)
    image[20:60] = (0, 255, 0)
    image[60:] = (0, 0, 255)
    return image


def test_portrait_is_centre_cropped_not_squashed():
    square = square_resize(_portrait_image(), 20)
    assert square.shape == (20, 20, 3)
    assert (square == (0, 255, 0)).all()  # a squash would show the red and blue bands


def test_portrait_video_is_centre_cropped(tmp_path):
    frames = np.repeat(_portrait_image()[np.newaxis], 3, axis=0)
    path = write_video(tmp_path / "portrait.avi", frames, "MJPG")
    square = square_resize(read_frames(path), 16)
    assert square.shape == (3, 16, 16, 3)
    assert square[..., 1].min() > 200 and square[..., 0].max() < 60 and square[..., 2].max() < 60


def test_box_outside_the_image_repeats_the_border():
    image = np.arange(20 * 20 * 3, dtype=np.uint8).reshape(20, 20, 3)
    cropped = square_resize(image, 30, box=(-10, -10, 30))
    np.testing.assert_array_equal(cropped[:10, :10], np.broadcast_to(image[0, 0], (10, 10, 3)))
    np.testing.assert_array_equal(cropped[10:, 10:], image[:20, :20])


def test_square_resize_shapes_and_single_channel():
    frames = np.zeros((4, 30, 50, 3), np.uint8)
    assert square_resize(frames, 12).shape == (4, 12, 12, 3)
    mask = np.zeros((30, 50, 1), np.uint8)
    assert square_resize(mask, 64).shape == (64, 64, 1)


def test_prepare_photo_from_path_and_array(tmp_path):
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(_portrait_image(), cv2.COLOR_RGB2BGR))
    from_path = prepare_photo(path, 16)
    assert from_path.shape == (16, 16, 3) and from_path[..., 1].min() > 200
    rgba = np.concatenate([_portrait_image(), np.zeros((80, 40, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(prepare_photo(rgba, 16), square_resize(_portrait_image(), 16))
