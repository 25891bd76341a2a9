"""SavedModel export: TF Serving layout, signatures, Keras parity, REST and gRPC request forms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import export_helpers
import numpy as np
import pytest
import tensorflow as tf

from affinegan_tf.export import signature

INTENSITIES = np.asarray([0.0, 0.5, 1.0, 1.5], np.float32)


@pytest.fixture(scope="session")
def loaded(exported):
    return tf.saved_model.load(str(exported / "saved_model" / "1"))


def keras_frames(generator, image, intensities) -> np.ndarray:
    return signature.make_generate(generator)(image, intensities)["frames"].numpy()


def test_saved_model_is_in_the_versioned_tf_serving_layout(exported):
    version = exported / "saved_model" / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    assert [child.name for child in (exported / "saved_model").iterdir()] == ["1"]


def test_reloaded_generate_matches_keras_for_any_image_size(loaded, generator):
    for shape in [(64, 64, 3), (90, 70, 3)]:
        image = export_helpers.face_image(max(shape[:2]))[: shape[0], : shape[1]]
        frames = loaded.signatures["generate"](
            image=tf.constant(image), intensities=tf.constant(INTENSITIES)
        )["frames"].numpy()
        expected = keras_frames(generator, image, INTENSITIES)
        assert frames.dtype == np.uint8 and frames.shape == (4, 64, 64, 3)
        # Same graph; grappler may fuse ops differently, which can move a value across a
        # rounding boundary: at most one level.
        assert np.abs(frames.astype(int) - expected.astype(int)).max() <= 1


def test_serving_default_is_generate(loaded):
    image = export_helpers.face_image(64)
    inputs = {"image": tf.constant(image), "intensities": tf.constant(INTENSITIES)}
    default = loaded.signatures["serving_default"](**inputs)["frames"].numpy()
    named = loaded.signatures["generate"](**inputs)["frames"].numpy()
    np.testing.assert_array_equal(default, named)


def test_generate_batch_gives_each_image_its_own_frames(loaded):
    images = np.stack([export_helpers.face_image(72, seed) for seed in (1, 2)])
    intensities = tf.constant(INTENSITIES[:3])
    batch = loaded.signatures["generate_batch"](images=tf.constant(images), intensities=intensities)
    frames = batch["frames"].numpy()
    assert frames.shape == (2, 3, 64, 64, 3) and frames.dtype == np.uint8
    for index, image in enumerate(images):
        single = loaded.signatures["generate"](image=tf.constant(image), intensities=intensities)
        difference = np.abs(frames[index].astype(int) - single["frames"].numpy().astype(int))
        assert difference.max() <= 1


def test_saved_model_cli_shows_signatures_with_dtypes_and_shapes(exported):
    cli = Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run(
        [str(cli), "show", "--all", "--dir", str(exported / "saved_model" / "1")],
        capture_output=True,
        text=True,
        check=True,
    )
    text = result.stdout
    blocks = {}
    for block in text.split("signature_def[")[1:]:
        name = block.split("]")[0].strip("'")
        blocks[name] = " ".join(block.split())
    assert {"generate", "generate_batch", "serving_default"} <= set(blocks)
    for name in ("generate", "serving_default"):
        block = blocks[name]
        assert "inputs['image'] tensor_info: dtype: DT_UINT8 shape: (-1, -1, 3)" in block
        assert "inputs['intensities'] tensor_info: dtype: DT_FLOAT shape: (-1)" in block
        assert "outputs['frames'] tensor_info: dtype: DT_UINT8 shape: (-1, 64, 64, 3)" in block
    batch = blocks["generate_batch"]
    assert "inputs['images'] tensor_info: dtype: DT_UINT8 shape: (-1, -1, -1, 3)" in batch
    assert "outputs['frames'] tensor_info: dtype: DT_UINT8 shape: (-1, -1, 64, 64, 3)" in batch


def _inputs_for(function, values: dict) -> dict:
    """Request values as tensors of the dtypes the signature declares."""
    specs = function.structured_input_signature[1]
    return {name: tf.constant(values[name], dtype=specs[name].dtype) for name in specs}


def test_rest_json_body_gives_the_same_frames(loaded):
    image = export_helpers.face_image(64, seed=3)
    body = json.dumps(
        {
            "signature_name": "generate",
            "inputs": {"image": image.tolist(), "intensities": INTENSITIES.tolist()},
        }
    )
    request = json.loads(body)  # what TF Serving's REST endpoint receives
    function = loaded.signatures[request["signature_name"]]
    result = function(**_inputs_for(function, request["inputs"]))
    # TF Serving's columnar ("inputs") REST format names the outputs only when there are
    # several; with the one output `frames` the body is {"outputs": [...]}.
    assert list(result) == ["frames"]
    response = json.loads(json.dumps({"outputs": result["frames"].numpy().tolist()}))
    frames = np.asarray(response["outputs"], np.uint8)
    direct = loaded.signatures["generate"](
        image=tf.constant(image), intensities=tf.constant(INTENSITIES)
    )["frames"].numpy()
    np.testing.assert_array_equal(frames, direct)


def test_grpc_predict_request_gives_the_same_frames(loaded):
    from tensorflow_serving.apis import predict_pb2

    image = export_helpers.face_image(80, seed=4)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "affinegan"
    request.model_spec.signature_name = "generate"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(image))
    request.inputs["intensities"].CopyFrom(tf.make_tensor_proto(INTENSITIES))
    received = predict_pb2.PredictRequest.FromString(request.SerializeToString())

    function = loaded.signatures[received.model_spec.signature_name]
    values = {name: tf.make_ndarray(proto) for name, proto in received.inputs.items()}
    result = function(**_inputs_for(function, values))
    response = predict_pb2.PredictResponse()
    response.outputs["frames"].CopyFrom(tf.make_tensor_proto(result["frames"].numpy()))
    frames = tf.make_ndarray(
        predict_pb2.PredictResponse.FromString(response.SerializeToString()).outputs["frames"]
    )

    direct = loaded.signatures["generate"](
        image=tf.constant(image), intensities=tf.constant(INTENSITIES)
    )["frames"].numpy()
    assert frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, direct)
