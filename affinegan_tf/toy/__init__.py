"""The built-in synthetic data set: procedurally drawn faces showing one expression per set.

Demo and test data, outside the path from files to tf.data (nothing in `affinegan_tf.data`
imports it). Modules: `names` (expressions, kinds, formats), `identity` (random people),
`drawing` (one face, one mask), `videos` (intensity schedules, one video), `dataset` (writing
the set).

Every video starts from a neutral face (intensity 0) and shows ONE expression (`smile`,
`surprise`, `close_eyes` or `puff_cheeks`) at a ground-truth intensity per frame. The intensity
drives the drawing continuously and monotonically, from the neutral face at 0 to a large, simple
change at 1, so that a model trained for a few minutes can learn it and a test can measure it.

Identities differ in skin tone, face shape, hair style and colour, eyes, brows, nose, lips, ears,
clothes, background and lighting; each video adds a pixel or two of head motion and image noise.
Faces are drawn anti-aliased at four times the requested size and shrunk with `INTER_AREA`.

Videos come in four kinds, cycled so that each has about a quarter of the set (see
`intensity_schedule`): `complete` (neutral -> apex), `incomplete` (stops short of the apex),
`periodic` (the expression comes and goes) and `shuffled` (a complete video with every frame but the
first in random order).

`write_toy_dataset` writes the authors' layout::

    out/train/img/<video>/frame_0001.jpg ...    frames (JPEG, quality 95)
    out/train/patch/<video>/frame_0001.jpg ...  mouth masks, the SAME file names as the frames
    out/test/img/<video>/frame_0001.jpg ...     held-out people; frame 1 is the neutral photo
    out/intensities.csv                         split, video, kind, frame, file, intensity
    out/README.txt

Masks are single-channel JPEGs with the frames' names. Their rectangles are snapped outwards to
JPEG's 8x8 pixel blocks, so every block is all 0 or all 255 and decodes back exactly: the masks
stay strictly binary despite the lossy format. Test videos have no masks.

Video names are `<kind>_<number>` (`complete_000`, `periodic_002`, ...), numbered on from the
training videos into the test videos so that every name is unique. In `intensities.csv`, `frame`
counts from 0 and `file` is the path relative to `out`. With `video_format="mp4"` each video is
one H.264 file, `out/{train,test}/img/<video>.mp4` (no masks), and `file` names that file.
"""

import importlib

from affinegan_tf.toy.names import EXPRESSIONS, KINDS, VIDEO_FORMATS

# The drawing code (OpenCV, NumPy) loads on first use, so that the CLI can import the names above
# for its --help without it.
_LAZY = {
    "README_MARKER": "dataset",
    "write_toy_dataset": "dataset",
    "mouth_mask": "drawing",
    "render_face": "drawing",
    "Identity": "identity",
    "random_identity": "identity",
    "ToyVideo": "videos",
    "intensity_schedule": "videos",
    "make_video": "videos",
    "video_name": "videos",
}

__all__ = ["EXPRESSIONS", "KINDS", "VIDEO_FORMATS", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
