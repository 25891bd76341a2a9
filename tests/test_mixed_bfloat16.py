"""The bfloat16 option: config field, policy, a training step through build_model."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from affinegan_tf.config import PRESETS, RunConfig, TrainConfig
from affinegan_tf.errors import UserError
from affinegan_tf.speed import random_batch
from affinegan_tf.training import build_model


def test_precision_policy_and_loss_scaling_follow_the_dtype():
    assert TrainConfig().precision_policy == "float32"
    assert not TrainConfig().loss_scaling
    float16 = TrainConfig(mixed_precision=True)
    assert (float16.precision_policy, float16.loss_scaling) == ("mixed_float16", True)
    bfloat16 = TrainConfig(mixed_precision=True, mixed_precision_dtype="bfloat16")
    assert (bfloat16.precision_policy, bfloat16.loss_scaling) == ("mixed_bfloat16", False)
    # The dtype alone changes nothing: mixed_precision is the switch.
    assert TrainConfig(mixed_precision_dtype="bfloat16").precision_policy == "float32"
    with pytest.raises(UserError, match="mixed_precision_dtype"):
        TrainConfig(mixed_precision=True, mixed_precision_dtype="int8")


def test_a_config_json_from_before_the_field_still_loads():
    values = json.loads(RunConfig().to_json())
    del values["train"]["mixed_precision_dtype"]
    values["train"]["mixed_precision"] = True
    loaded = RunConfig.from_dict(values)
    assert loaded.train.precision_policy == "mixed_float16"


def test_a_bfloat16_training_step_updates_float32_weights_without_loss_scaling():
    model_config = dataclasses.replace(
        PRESETS["tiny"], image_size=32, ngf=8, ndf=8, local_discriminator="on"
    )
    train = TrainConfig(mixed_precision=True, mixed_precision_dtype="bfloat16")
    run_config = RunConfig(model=model_config, train=train, preset="tiny")
    keras.mixed_precision.set_global_policy(train.precision_policy)
    try:
        model = build_model(run_config, total_steps=10)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert not isinstance(model.generator_optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.generator.decoder.blocks[0].conv.compute_dtype == "bfloat16"
    before = [np.array(variable.numpy()) for variable in model.generator_variables]
    logs = model.train_step(random_batch(run_config))
    assert all(variable.dtype == "float32" for variable in model.generator_variables)
    assert all(np.isfinite(float(value)) for value in logs.values())
    moved = [
        not np.array_equal(old, variable.numpy())
        for old, variable in zip(before, model.generator_variables, strict=True)
    ]
    assert sum(moved) > len(moved) // 2


def test_the_fit_flag_takes_an_optional_dtype():
    from affinegan_tf.cli import build_parser

    parser = build_parser()

    def parsed(*flags):
        return parser.parse_args(["fit", "--data", "videos", *flags]).mixed_precision

    assert parsed() is None
    assert parsed("--mixed-precision") == "float16"
    assert parsed("--mixed-precision", "bfloat16") == "bfloat16"
    with pytest.raises(SystemExit):
        parsed("--mixed-precision", "int8")


def test_a_run_loaded_after_bfloat16_training_generates_and_exports_in_float32(tmp_path):
    import export_helpers

    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.export.tflite import export_tflite

    run_dir = export_helpers.write_run_folder(tmp_path / "run")
    # What a `fit --mixed-precision bfloat16` leaves behind in its process (the demo and Python
    # users export in the same process).
    export_helpers.fresh_names()  # (clears the session, and with it the policy: set it after)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model, _ = load_model(run_dir)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # left as it was
    finally:
        keras.mixed_precision.set_global_policy("float32")
    generator = model.inference_generator
    assert generator.decoder.blocks[0].conv.compute_dtype == "float32"
    (tmp_path / "exported").mkdir()
    files = export_tflite(generator, tmp_path / "exported", fp16=False)
    assert files and all(path.stat().st_size > 0 for path in files)


def test_fit_points_float32_runs_on_amx_cpus_at_128_px_and_more_to_bfloat16():
    from affinegan_tf.training import precision_hint

    def config(image_size, mixed=False):
        model = dataclasses.replace(PRESETS["small"], image_size=image_size)
        train = TrainConfig(mixed_precision=mixed, mixed_precision_dtype="bfloat16")
        return RunConfig(model=model, train=train, preset="small")

    amx = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    hint = precision_hint(config(256), amx, [])
    assert hint is not None and "--mixed-precision bfloat16" in hint
    assert precision_hint(config(128), amx, []) is not None
    assert precision_hint(config(64), amx, []) is None  # no gain measured at 64 px
    assert precision_hint(config(256, mixed=True), amx, []) is None  # already on
    assert precision_hint(config(256), {"avx512f", "avx512_bf16"}, []) is None  # no AMX
    assert precision_hint(config(256), amx, ["/device:GPU:0"]) is None  # the GPU trains
