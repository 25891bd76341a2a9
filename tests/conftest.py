"""Shared fixtures: the ../shared sample media (skipped when absent) and small toy data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The same conv forms on every machine (not the per-machine choice), so that figures compared
# across processes agree to the bit; tests/test_compute_rewrites.py covers both forms.
os.environ.setdefault("AFFINEGAN_TF_CONV_FORMS", "standard")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data with the real sample clip and photos; skips the test when absent."""
    if not (SHARED_DATA / "single_face.mp4").is_file():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data set in the authors' layout (8 videos, 64x64, with masks)."""
    from affinegan_tf.toy import write_toy_dataset

    root = tmp_path_factory.mktemp("toy")
    write_toy_dataset(root, num_videos=8, size=64, expression="smile", seed=0)
    return root


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full export (every format, fp16 too) of an untrained `tiny` run, built once."""
    import export_helpers

    return export_helpers.tiny_export(tmp_path_factory)[0]


@pytest.fixture(scope="session")
def generator(tmp_path_factory: pytest.TempPathFactory):
    """The generator of that `tiny` run (the Keras reference of the export tests)."""
    import export_helpers

    return export_helpers.tiny_model(tmp_path_factory)[0].generator
