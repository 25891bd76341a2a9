"""How much of the frame an attention-output model redraws: its mask on held-out faces.

For the first frame of each held-out video of a synthetic set (`<data>/test/img`), decodes the
calibrated intensities 0, 0.25, .., 1 with the run's inference generator and reports, per
intensity, the mean of the mask m (the `g_attention_mask` term), its total variation (the
`g_attention_smoothness` term) and the share of pixels with m > 0.5; prints one JSON line and, with
`--sheet`, writes a PNG: per face one row of the input, then mask and frame at each intensity.

    python benchmarks/mask_stats.py RUN_DIR DATA_DIR --sheet masks.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

INTENSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("data_dir")
    parser.add_argument("--faces", type=int, default=12, help="held-out faces (first, not picked)")
    parser.add_argument("--sheet", help="PNG to write (input, then mask and frame per intensity)")
    args = parser.parse_args(argv)

    import tensorflow as tf
    from PIL import Image

    from affinegan_tf.calibration import to_raw
    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.data.pixels import to_model_range
    from affinegan_tf.evaluation.curves import read_video_frames
    from affinegan_tf.losses import mask_mean, total_variation
    from affinegan_tf.run_folder import intensity_apex

    model, _ = load_model(args.run_dir)
    if model.config.output != "attention":
        raise SystemExit(f"{args.run_dir} was trained with output {model.config.output!r}: no mask")
    apex = intensity_apex(args.run_dir)
    generator = model.inference_generator
    size = model.config.image_size
    names = sorted(path.name for path in (Path(args.data_dir) / "test" / "img").iterdir())
    stats = {value: {"mean": [], "tv": [], "open": []} for value in INTENSITIES}
    rows = []
    for name in names[: args.faces]:
        frames, _ = read_video_frames(Path(args.data_dir) / "test" / "img" / name, size)
        face = to_model_range(frames[0][np.newaxis])
        base, delta = generator.encode(face)
        delta = [to_raw(features, float(apex)) for features in delta]
        combined = generator.combine(base, delta, tf.constant(INTENSITIES, tf.float32))
        decoded, masks = generator.decoder(combined, source=face, return_mask=True)
        row = [frames[0]]
        for index, value in enumerate(INTENSITIES):
            mask = masks[index : index + 1]
            stats[value]["mean"].append(float(mask_mean(mask)))
            stats[value]["tv"].append(float(total_variation(mask)))
            stats[value]["open"].append(float(np.mean(mask.numpy() > 0.5)))
            row.append(np.repeat(np.uint8(np.clip(mask[0].numpy(), 0, 1) * 255), 3, axis=-1))
            row.append(np.uint8(np.clip((decoded[index].numpy() + 1) * 127.5, 0, 255)))
        rows.append(np.concatenate(row, axis=1))
    line = {
        "run": str(args.run_dir),
        "faces": len(rows),
        "apex_raw": apex,
        **{
            f"a={value}": {key: round(float(np.mean(v)), 4) for key, v in entry.items()}
            for value, entry in stats.items()
        },
    }
    print(json.dumps(line), flush=True)
    if args.sheet:
        sheet = np.concatenate(rows, axis=0)
        Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), 0).save(args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
