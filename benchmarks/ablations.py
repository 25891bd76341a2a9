"""Trains each ablation variant on one synthetic set (same seed, same budget) and evaluates it.

Prints one JSON line per variant and writes `<out>/ablations.md` (see
`affinegan_tf/evaluation/ablations.py` for the variants and what is measured):

    python benchmarks/ablations.py --out runs/ablations               # ~75 min on 2 cores
    python benchmarks/ablations.py --out /tmp/abl --steps 300 --videos 16   # a quick check

A rerun reuses finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from affinegan_tf.evaluation.ablations import (
        DEFAULT_STEPS,
        DEFAULT_TEST_VIDEOS,
        DEFAULT_VIDEOS,
        VARIANTS,
        run_ablations,
    )

    parser = argparse.ArgumentParser(description="AffineGAN ablations on the synthetic set")
    parser.add_argument("--out", default="runs/ablations", help="folder for data, runs, reports")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="steps per variant")
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS, help="training videos")
    parser.add_argument(
        "--test-videos", type=int, default=DEFAULT_TEST_VIDEOS, help="held-out videos evaluated"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    args = parser.parse_args(argv)
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    for line in run_ablations(
        args.out,
        steps=args.steps,
        videos=args.videos,
        test_videos=args.test_videos,
        learning_rate=args.learning_rate,
        seed=args.seed,
        variants=variants,
    ):
        print(json.dumps(line), flush=True)
    print((Path(args.out) / "ablations.md").read_text(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
