"""--face-crop: the Haar cascade bundled with OpenCV on real photos; the error when none found."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from affinegan_tf.data.faces import detect_face, face_box
from affinegan_tf.data.images import read_image
from affinegan_tf.data.square import prepare_photo
from affinegan_tf.errors import UserError


def test_face_found_in_a_real_photo(shared_data):
    image = read_image(shared_data / "lisa4.jpg")
    face = detect_face(image)
    assert face is not None
    x, y, w, h = face
    height, width = image.shape[:2]
    # The face is roughly centred and large; not the small false detection near the bottom.
    assert w > width / 3 and h > width / 3
    assert abs((x + w / 2) - width / 2) < width / 4
    assert y + h < height * 0.75


def test_face_box_is_a_square_with_margin(shared_data):
    image = read_image(shared_data / "lisa4.jpg")
    x, y, w, h = detect_face(image)
    box_x, box_y, side = face_box(image, 0.35, "lisa4.jpg")
    assert side == round(max(w, h) * 1.7)
    assert abs((box_x + side / 2) - (x + w / 2)) <= 1
    assert abs((box_y + side / 2) - (y + h / 2)) <= 1


def test_face_crop_of_a_real_photo(shared_data):
    face = prepare_photo(shared_data / "lisa4.jpg", 64, face_crop=True)
    centre = prepare_photo(shared_data / "lisa4.jpg", 64)
    assert face.shape == centre.shape == (64, 64, 3)
    assert not np.array_equal(face, centre)
    # The face crop still finds the face: the crop is centred on it.
    x, y, w, h = detect_face(face)
    assert abs((x + w / 2) - 32) < 8 and abs((y + h / 2) - 32) < 8


def test_small_images_are_upscaled_before_detection(shared_data):
    image = read_image(shared_data / "lisa4.jpg")
    box_x, box_y, side = face_box(image, 0.1, "lisa4.jpg")
    small = cv2.resize(image[box_y : box_y + side, box_x : box_x + side], (80, 80))
    face = detect_face(small)
    assert face is not None and face[2] > 40


def test_blank_image_gives_a_clear_error(tmp_path):
    path = tmp_path / "blank.png"
    cv2.imwrite(str(path), np.full((256, 256, 3), 128, np.uint8))
    assert detect_face(read_image(path)) is None
    with pytest.raises(UserError, match=r"No face found in .*blank\.png.*drop --face-crop"):
        prepare_photo(path, 64, face_crop=True)
