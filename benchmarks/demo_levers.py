"""One lever of the demo at a time: train the toy recipe with overrides, score on held-out videos.

Each call trains one variant on the demo's synthetic set (48 people, 64 x 64, the given seed and
expression) and prints one JSON line: the overrides, steps, training seconds, steps/s and the
held-out scores of `affinegan_tf.evaluation.held_out` (Spearman per kind, L1 at a = 0, L1 at the
true intensity next to copying the input, where the apex lands).

    python benchmarks/demo_levers.py --out runs/levers --name base --steps 6000
    python benchmarks/demo_levers.py --out runs/levers --name resize --steps 6000 \\
        --set model.upsample=resize
    python benchmarks/demo_levers.py --out runs/levers --name b4 --minutes 8 \\
        --set train.batch_size=4
    python benchmarks/demo_levers.py --out runs/levers --name mask1 --steps 6000 \\
        --set train.loss_weights.attention_mask=1.0

A fixed budget in minutes (`--minutes`) converts to steps with the variant's own speed, measured
first on random data in the same process (so a slower variant trains fewer steps); `--steps`
fixes the step count instead (use it on a shared machine, with a speed measured when idle).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path


def _overrides(pairs: list[str]) -> dict[str, dict]:
    """`--set` values by section: "train.batch_size=4" -> {"train": {"batch_size": 4}}; a deeper
    key names a sub-table: "train.loss_weights.attention_mask=0.5" -> {"train": {"loss_weights":
    {"attention_mask": 0.5}}} (resolve_config merges it with the recipe's other weights)."""
    sections: dict[str, dict] = {"model": {}, "train": {}, "data": {}}
    for pair in pairs:
        key, _, text = pair.partition("=")
        section, *names = key.split(".")
        if section not in sections or not names or not all(names) or not text:
            raise SystemExit(
                f"--set wants section.name=value or section.table.name=value (sections "
                f"model/train/data), got {pair!r}"
            )
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        table = sections[section]
        for name in names[:-1]:
            table = table.setdefault(name, {})
            if not isinstance(table, dict):
                raise SystemExit(f"--set {pair!r}: {name} was already given a value")
        table[names[-1]] = value
    return sections


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/levers")
    parser.add_argument("--name", required=True, help="the variant's folder name")
    parser.add_argument("--expression", default="smile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, default=48, help="training videos (people)")
    parser.add_argument(
        "--test-videos",
        type=int,
        default=48,
        help="held-out videos scored (the demo has 12; with 3 per kind its Spearman is noisy)",
    )
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, help="training budget in minutes")
    budget.add_argument("--steps", type=int, help="training budget in steps")
    parser.add_argument("--set", action="append", default=[], help="section.name=value")
    args = parser.parse_args(argv)

    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.evaluation.held_out import held_out_scores
    from affinegan_tf.machine_load import cpu_model
    from affinegan_tf.recipes import resolve_config
    from affinegan_tf.run_folder import intensity_apex
    from affinegan_tf.speed import config_for_masked_data, measure_steps_per_second
    from affinegan_tf.toy import write_toy_dataset
    from affinegan_tf.training import fit

    out = Path(args.out)
    data_dir = out / f"data-{args.expression}-{args.seed}-{args.videos}-{args.test_videos}"
    if not (data_dir / "intensities.csv").is_file():
        write_toy_dataset(
            data_dir,
            num_videos=args.videos,
            size=64,
            expression=args.expression,
            seed=args.seed,
            test_videos=args.test_videos,
        )
    overrides = _overrides(args.set)
    train = {"seed": args.seed, **overrides["train"]}

    def config_for(steps=None):
        extra = {"steps": steps, "checkpoint_every": max(1, (steps or 1000) // 2)} if steps else {}
        return resolve_config(
            str(data_dir),
            pipeline="toy",
            model_overrides=overrides["model"],
            data_overrides=overrides["data"],
            train_overrides={**train, **extra},
        )

    config = config_for()
    rate = measure_steps_per_second(config_for_masked_data(config))
    steps = args.steps or max(100, int(rate * args.minutes * 60))
    run_dir = out / f"{args.name}-{args.expression}-{args.seed}"
    started = time.monotonic()
    fit(config_for(steps), run_dir)
    seconds = time.monotonic() - started
    model, _ = load_model(run_dir)
    apex = intensity_apex(run_dir)
    scores = held_out_scores(model, data_dir, apex=apex)
    line = {
        "name": args.name,
        "set": args.set,
        "expression": args.expression,
        "seed": args.seed,
        "steps": steps,
        "measured_steps_per_second": round(rate, 2),
        "train_seconds": round(seconds, 1),
        "apex_raw": apex,
        "cpu_model": cpu_model(),
        "load_average": os.getloadavg()[0],
        **scores,
    }
    print(json.dumps(line), flush=True)
    with open(out / "levers.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
