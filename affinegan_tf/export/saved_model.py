"""SavedModel export in the versioned layout TensorFlow Serving expects: `<out>/saved_model/1/`.

Signatures, all traced from `export/signature.py`:
- `generate` (also `serving_default`): image uint8 [H, W, 3], intensities float32 [N]
  -> frames uint8 [N, S, S, 3].
- `generate_batch`: images uint8 [B, H, W, 3], intensities float32 [N]
  -> frames uint8 [B, N, S, S, 3].

Serving it (the model name is free; the folder is the one holding `1/`):

    docker run -p 8501:8501 -p 8500:8500 \
        -v "$PWD/exported/NAME/saved_model:/models/affinegan" \
        -e MODEL_NAME=affinegan tensorflow/serving

    curl -d '{"signature_name": "generate", "inputs": {"image": [[[0, 0, 0], ...]],
              "intensities": [0.0, 0.5, 1.0]}}' \
        http://localhost:8501/v1/models/affinegan:predict

or over gRPC (port 8500) with a `tensorflow_serving.apis.predict_pb2.PredictRequest` whose inputs
are `tf.make_tensor_proto(image_uint8)` and `tf.make_tensor_proto(intensities_float32)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from affinegan_tf.calibration import UNCALIBRATED_APEX
from affinegan_tf.conv_forms import portable_graph
from affinegan_tf.export import signature
from affinegan_tf.networks import AffineGenerator

SAVED_MODEL_DIR = "saved_model"
MODEL_VERSION = "1"
SIGNATURE_NAMES = ("generate", "generate_batch")
DEFAULT_SIGNATURE = "serving_default"


class GenerateModule(tf.Module):
    """Holds the generator's variables and the serving functions, so that
    `tf.saved_model.save` writes the weights and the signatures together."""

    def __init__(self, generator: AffineGenerator, apex: float = UNCALIBRATED_APEX):
        super().__init__(name="affinegan_generate")
        # Keras 3 variables are trackable; a list attribute makes tf.Module save them.
        self.generator_variables = list(generator.variables)
        self.generate = signature.make_generate(generator, apex)
        self.generate_batch = signature.make_generate_batch(generator, apex)

    def signatures(self) -> dict:
        generate = self.generate.get_concrete_function()
        return {
            DEFAULT_SIGNATURE: generate,
            "generate": generate,
            "generate_batch": self.generate_batch.get_concrete_function(),
        }


def export_saved_model(
    generator: AffineGenerator, out_dir: Path, apex: float = UNCALIBRATED_APEX
) -> Path:
    """Writes `<out_dir>/saved_model/1/` and returns that folder; `apex` (the raw intensity a = 1
    means, calibration.py) becomes a constant of the signatures' graphs."""
    directory = Path(out_dir) / SAVED_MODEL_DIR / MODEL_VERSION
    directory.parent.mkdir(parents=True, exist_ok=True)
    # The standard conv ops: the graph does not depend on the exporting machine's conv speeds
    # (conv_forms.py), and TF Serving runs it on whatever CPU or GPU serves it.
    with portable_graph():
        module = GenerateModule(generator, apex)
        tf.saved_model.save(module, str(directory), signatures=module.signatures())
    return directory


def _spec_dict(specs: dict) -> dict:
    return {
        name: {
            "dtype": spec.dtype.name,
            "shape": [None if size is None else int(size) for size in spec.shape.as_list()],
        }
        for name, spec in sorted(specs.items())
    }


def saved_model_io(directory: Path) -> dict:
    """Exact I/O of every signature of a SavedModel, read back from the saved files."""
    loaded = tf.saved_model.load(str(directory))
    described = {}
    for name, function in sorted(loaded.signatures.items()):
        described[name] = {
            "inputs": _spec_dict(function.structured_input_signature[1]),
            "outputs": _spec_dict(function.structured_outputs),
        }
    return described


def load_generate(directory: Path):
    """The `generate` signature of a SavedModel: call with image= and intensities= tensors."""
    loaded = tf.saved_model.load(str(directory))
    if "generate" not in loaded.signatures:
        raise KeyError(f"{directory} has no 'generate' signature")
    return loaded, loaded.signatures["generate"]


def generate_with_saved_model(function, image: np.ndarray, intensities) -> np.ndarray:
    """Runs a loaded `generate` signature: uint8 [H, W, 3] + N floats -> uint8 [N, S, S, 3]."""
    result = function(
        image=tf.constant(np.asarray(image, np.uint8)),
        intensities=tf.constant(np.asarray(intensities, np.float32)),
    )
    return result["frames"].numpy()
