"""The README's before/after GIF of a shipped smile model, from `smile_frl_figures.py`'s output.

One row: for each of the FIRST `--people` held-out people of the data card (the fixed hold-out
order, not picked by looks), then each `--photo`, the photo cropped as `generate` crops it beside
the model's 16-frame ping-pong GIF of it, all enlarged by `--scale` (nearest neighbour, so the
model's own pixels are shown).

    python benchmarks/smile_frl_readme_gifs.py --figures runs/figures-64 \
        --data data/smile-frl --out docs/smile_frl_before_after.gif [--people 4] [--scale 2]
    python benchmarks/smile_frl_readme_gifs.py --figures runs/figures-64 \
        --data data/smile-frl --out docs/smile_frl_lisa4.gif --people 0 \
        --photo ../shared/data/lisa4.jpg
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def _gif_frames(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    frames = iio.imread(path, index=None)
    return np.asarray(frames)[..., :3]


def _enlarged(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figures", required=True, help="smile_frl_figures.py's --out folder")
    parser.add_argument("--data", required=True, help="prepare-pairs output (data card)")
    parser.add_argument("--out", required=True, help="the GIF to write")
    parser.add_argument("--people", type=int, default=4)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument(
        "--photo", action="append", default=[], help="extra photos given to the figures script"
    )
    args = parser.parse_args(argv)

    from affinegan_tf.animation import write_animation
    from affinegan_tf.data.square import prepare_photo
    from affinegan_tf.errors import UserError
    from affinegan_tf.pairs import read_data_card

    figures = Path(args.figures)
    card = read_data_card(args.data)
    photos = [
        (item["name"], Path(card["sources"]["neutral"]) / item["neutral"])
        for item in card["test"][: args.people]
    ] + [(Path(photo).stem, Path(photo)) for photo in args.photo]
    columns = []
    for name, photo in photos:
        gif = figures / f"{name}.gif"
        if not gif.is_file():
            raise UserError(f"{gif} is missing: run benchmarks/smile_frl_figures.py first.")
        generated = _gif_frames(gif)
        size = generated.shape[1]
        real = prepare_photo(photo, size, face_crop=True, face_margin=card["crop"]["margin"])
        real = np.broadcast_to(real, generated.shape)
        columns.append(np.concatenate([real, generated], axis=2))
    frames = np.concatenate(columns, axis=2)
    frames = np.stack([_enlarged(frame, args.scale) for frame in frames])
    print(write_animation(frames, args.out, fps=8.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
