"""Recipes and config resolution: preset < pipeline recipe (TOML) < command-line flags.

A recipe (pipelines/*.toml, shipped in the package) names a preset and overrides any setting of
its [model], [data] and [train] tables; `resolve_config` merges the three layers into the frozen
RunConfig that `fit` trains and writes to `<run>/config.json`.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

from affinegan_tf import config as config_module
from affinegan_tf.config import DataConfig, RunConfig, TrainConfig
from affinegan_tf.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# [pairs] is read by `prepare-pairs --pipeline` (pairs.py), not by fit.
RECIPE_SECTIONS = {"preset", "model", "data", "train", "description", "pairs"}


def builtin_pipelines() -> dict[str, Path]:
    """The recipes shipped in the package (the repository's pipelines/ folder), by name."""
    try:
        # A namespace package (no __init__.py): files() gives a MultiplexedPath, whose str() is
        # no path, but whose entries are real paths.
        items = list(resources.files("affinegan_tf.pipelines").iterdir())
    except ModuleNotFoundError:  # running from a checkout that was not pip-installed
        items = list((Path(__file__).resolve().parents[1] / "pipelines").iterdir())
    return {
        Path(item.name).stem: Path(str(item))
        for item in sorted(items, key=lambda item: item.name)
        if item.name.endswith(".toml")
    }


def find_pipeline(name_or_path: str | Path) -> Path:
    """A recipe file: a path that exists, else a built-in recipe by name or file name.

    `--pipeline toy`, `--pipeline toy.toml` and `--pipeline pipelines/toy.toml` all work from an
    installed package, where the repository's pipelines/ folder is not beside the user.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = builtin_pipelines()
    if path.stem in builtin and path.suffix in ("", ".toml"):
        return builtin[path.stem]
    raise UserError(
        f"Pipeline recipe {path} does not exist. Give a TOML file, or one of the built-in "
        f"recipes: {', '.join(sorted(builtin))}."
    )


def load_pipeline(path: str | Path) -> dict:
    """Reads a TOML recipe: optional `preset`, and [model], [data], [train] tables."""
    path = find_pipeline(path)
    try:
        recipe = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"Pipeline recipe {path} is not valid TOML: {error}.") from error
    unknown = sorted(set(recipe) - RECIPE_SECTIONS)
    if unknown:
        raise UserError(
            f"Pipeline recipe {path}: unknown section(s) {', '.join(unknown)}; "
            "expected preset, description, [model], [data], [train] (and [pairs] for "
            "prepare-pairs)."
        )
    return recipe


def resolve_config(
    data: str,
    pipeline: str | None = None,
    preset_name: str | None = None,
    model_overrides: dict | None = None,
    data_overrides: dict | None = None,
    train_overrides: dict | None = None,
) -> RunConfig:
    """Preset < pipeline recipe < command-line flags (None means 'not given').

    Sub-tables merge setting by setting: a recipe's `[train.loss_weights]` or an override
    `{"loss_weights": {"attention_mask": 0.5}}` changes the weights it names and keeps the rest.
    """
    recipe = load_pipeline(pipeline) if pipeline else {}
    name = preset_name or recipe.get("preset") or config_module.DEFAULT_PRESET
    model = config_module.preset(name)
    values = {
        "model": _merged(dataclasses.asdict(model), recipe.get("model", {})),
        "data": _merged(dataclasses.asdict(DataConfig()), recipe.get("data", {})),
        "train": _merged(dataclasses.asdict(TrainConfig()), recipe.get("train", {})),
        "preset": name,
    }
    for section, overrides in (
        ("model", model_overrides),
        ("data", data_overrides),
        ("train", train_overrides),
    ):
        values[section] = _merged(values[section], overrides or {})
    if (train_overrides or {}).get("epochs") is not None:
        values["train"]["steps"] = None
    values["data"]["data_dir"] = str(Path(data).resolve())
    return RunConfig.from_dict(values)


def _merged(base: dict, changes: dict) -> dict:
    """`base` updated by `changes`, sub-tables (dicts in both) merged key by key, None skipped.

    A value that is not a table where `base` has one (or the reverse) replaces it as it is, and
    `RunConfig.from_dict` then names the setting it cannot read.
    """
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def config_from_flags(
    data: str,
    pipeline: str | None = None,
    preset_name: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    local_d: str | None = None,
    face_crop: bool | None = None,
    seed: int | None = None,
    learning_rate: float | None = None,
    checkpoint_every: int | None = None,
    mixed_precision: bool | None = None,
    mixed_precision_dtype: str | None = None,
    intensity: str | None = None,
    intensity_discriminator: str | None = None,
    intensity_formula: str | None = None,
    output_mode: str | None = None,
    strict: bool | None = None,
    ema_decay: float | None = None,
) -> RunConfig:
    """The RunConfig of `affinegan-tf fit`'s flags: they override the recipe, which overrides
    the preset (None: the flag was not given)."""
    if not Path(data).exists():
        raise UserError(f"Data folder {data} does not exist.")
    return resolve_config(
        data,
        pipeline=pipeline,
        preset_name=preset_name,
        model_overrides={
            "local_discriminator": local_d,
            "intensity": intensity,
            "intensity_discriminator": None
            if intensity_discriminator is None
            else intensity_discriminator == "on",
            "intensity_formula": intensity_formula,
            "output": output_mode,
        },
        data_overrides={"face_crop": face_crop, "strict": strict},
        train_overrides={
            "epochs": epochs,
            "steps": steps,
            "batch_size": batch_size,
            "seed": seed,
            "learning_rate": learning_rate,
            "checkpoint_every": checkpoint_every,
            "mixed_precision": mixed_precision,
            "mixed_precision_dtype": mixed_precision_dtype,
            "ema_decay": ema_decay,
        },
    )
