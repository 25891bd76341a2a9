"""`import-pytorch`: the authors' PyTorch weights give the same frames and intensities here.

The reference is our own PyTorch model with their module layout and key names (tests/
pytorch_reference.py), random weights and non-zero biases, saved in both of PyTorch's formats.
Skipped without torch (the optional extra `pytorch`; .ci/run installs the CPU wheel).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the optional extra `pytorch` is not installed")

import pytorch_reference as reference  # noqa: E402
from cli_helpers import run_cli  # noqa: E402

from affinegan_tf.errors import UserError  # noqa: E402
from affinegan_tf.pytorch_import import detect_generator, import_pytorch  # noqa: E402

INTENSITIES = (0.0, 0.5, 1.0, 1.5)
# 256 x 256 input as the paper's; narrow (ngf 8) so that the default suite stays fast. The paper
# width itself is checked by the slow test and by the shape-only preset detection.
SIZE, NGF = 256, 8


def photo(seed: int, size: int = SIZE) -> np.ndarray:
    """A smooth face-sized test image: low-frequency colour fields plus a little texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [
        np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y + rng.uniform()))
        for _ in range(3)
    ]
    image = 127.5 + 90 * np.stack(channels, -1) + rng.normal(0, 10, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def save(module: torch.nn.Module, path: Path, legacy: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def reference_generator():
    return reference.randomise(reference.ReferenceGenerator(SIZE, NGF), seed=1)


@pytest.fixture(scope="module")
def imported_runs(reference_generator, tmp_path_factory):
    """The reference saved as legacy and as zip, each imported into a run folder."""
    root = tmp_path_factory.mktemp("pytorch")
    runs = {}
    for legacy in (True, False):
        name = "legacy" if legacy else "zip"
        source = save(reference_generator, root / name / "latest_net_G.pth", legacy)
        runs[name] = import_pytorch(source, root / f"run_{name}")
    return runs


@pytest.mark.parametrize("serialisation", ["legacy", "zip"])
def test_imported_frames_equal_the_reference(serialisation, imported_runs, reference_generator):
    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.rendering import generate_frames

    result = imported_runs[serialisation]
    sources = json.loads((result.run_dir / "import.json").read_text())["sources"]
    assert sources["generator"]["format"].startswith(serialisation)
    model, config = load_model(result.run_dir)
    assert (config.model.image_size, config.model.ngf) == (SIZE, NGF)
    face = photo(0)
    ours = generate_frames(model.generator, face, INTENSITIES).astype(int)
    theirs = reference.reference_frames(reference_generator, face, INTENSITIES).astype(int)
    difference = np.abs(ours - theirs)
    # Theirs truncates to uint8, ours rounds: up to 1 level from that, 2 with float noise.
    assert difference.max() <= 2, difference.max()
    assert difference.mean() < 1.0, difference.mean()
    # The frames do depend on the intensity (the check above is not vacuous).
    assert np.abs(ours[0] - ours[-1]).mean() > 2


def test_imported_intensity_uses_the_authors_formula(imported_runs, reference_generator):
    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.evaluation.curves import infer_frame_intensities

    model, config = load_model(imported_runs["zip"].run_dir)
    assert config.model.intensity_formula == "authors_code"
    neutral, frames = photo(0), np.stack([photo(1), photo(2)])
    ours = infer_frame_intensities(model, neutral, frames)
    theirs = [reference.reference_intensity(reference_generator, neutral, f) for f in frames]
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)


def test_import_records_the_source_and_refuses_to_overwrite(imported_runs, tmp_path):
    import hashlib

    run_dir = imported_runs["zip"].run_dir
    record = json.loads((run_dir / "import.json").read_text())
    source = Path(record["sources"]["generator"]["file"])
    assert (
        record["sources"]["generator"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    )
    assert record["intensity_formula"] == "authors_code" and "--eval" in record["note"]
    assert (run_dir / "checkpoints").is_dir() and (run_dir / "config.json").is_file()
    with pytest.raises(UserError, match="already exists"):
        import_pytorch(source, run_dir)
    assert import_pytorch(source, run_dir, force=True).run_dir == run_dir
    with pytest.raises(UserError, match="--preset paper is 256px, ngf 64"):
        import_pytorch(source, tmp_path / "other", preset_name="paper")


def test_discriminators_beside_the_generator_are_imported(reference_generator, tmp_path):
    """D, D_Patch and D_alpha files initialise our three discriminators, layer by layer."""
    import tensorflow as tf

    from affinegan_tf.checkpoints import TrainingCheckpoint
    from affinegan_tf.config import RunConfig
    from affinegan_tf.gan import AffineGAN
    from affinegan_tf.optimizers import make_optimizers

    folder = tmp_path / "smile"
    save(reference_generator, folder / "latest_net_G.pth", legacy=True)
    global_d = reference.randomise(reference.ReferencePatchDiscriminator(16), seed=2)
    local_d = reference.randomise(reference.ReferencePatchDiscriminator(16), seed=3)
    intensity_d = reference.randomise(reference.ReferenceIntensityDiscriminator(4), seed=4)
    save(global_d, folder / "latest_net_D.pth", legacy=True)
    save(local_d, folder / "latest_net_D_Patch.pth", legacy=False)
    save(intensity_d, folder / "latest_net_D_alpha.pth", legacy=True)
    result = import_pytorch(folder, tmp_path / "run")
    assert set(result.sources) == {"generator", "global", "local", "intensity"}
    assert (result.model.ndf, result.model.num_targets) == (16, 4)
    assert result.model.local_discriminator == "on"

    # The whole training state (as `fit` restores it) holds their discriminators.
    config = RunConfig.load(result.run_dir / "config.json")
    model = AffineGAN(config.model, use_local_discriminator=True)
    model.compile(*make_optimizers(config.train, 100))
    assert TrainingCheckpoint(model, result.run_dir).restore_latest() == 0
    rng = np.random.default_rng(0)
    pairs = rng.uniform(-1, 1, (2, 64, 64, 6)).astype(np.float32)
    for ours, theirs in (
        (model.global_discriminator, global_d),
        (model.local_discriminator, local_d),
    ):
        with torch.no_grad():
            expected = theirs(torch.from_numpy(pairs.transpose(0, 3, 1, 2))).numpy()
        np.testing.assert_allclose(
            ours(tf.constant(pairs)).numpy(), expected.transpose(0, 2, 3, 1), atol=1e-4
        )
    intensities = rng.uniform(0, 1, (3, 4)).astype(np.float32)
    with torch.no_grad():
        expected = intensity_d(torch.from_numpy(intensities)).numpy()
    np.testing.assert_allclose(
        model.intensity_discriminator(tf.constant(intensities)).numpy(), expected, atol=1e-6
    )


def test_preset_is_read_from_the_tensor_shapes():
    """Shapes only (broadcast views, no memory): the paper's 74 M-parameter layout is `paper`."""

    def shapes_of(image_size, ngf):
        channels = [ngf * min(2**level, 8) for level in range(int(np.log2(image_size)))]
        levels = len(channels)
        tensors = {}
        for level in range(levels):
            prefix = "model." + "sub." * level
            conv = 0 if level == 0 else 1
            inputs = 3 if level == 0 else channels[level - 1]
            for branch in ("down_base", "down_res"):
                weight = (channels[level], inputs, 4, 4)
                tensors[f"{prefix}{branch}.{conv}.weight"] = np.broadcast_to(np.float32(0), weight)
                tensors[f"{prefix}{branch}.{conv}.bias"] = np.zeros(channels[level], np.float32)
            up_in = channels[level] * (1 if level == levels - 1 else 2)
            up_out = 3 if level == 0 else channels[level - 1]
            tensors[f"{prefix}up_all.1.weight"] = np.broadcast_to(
                np.float32(0), (up_in, up_out, 4, 4)
            )
            tensors[f"{prefix}up_all.1.bias"] = np.zeros(up_out, np.float32)
        return tensors

    from affinegan_tf.pytorch_import import _choose_preset

    paper = shapes_of(256, 64)
    parameters = sum(int(np.prod(value.shape)) for value in paper.values())
    assert parameters == pytest.approx(73.9e6, rel=0.005)  # AFFINEGAN.md's generator size
    assert detect_generator(paper, Path("paper.pth")) == (256, 64)
    assert _choose_preset(256, 64, None, Path("x"))[0] == "paper"
    assert detect_generator(shapes_of(128, 64), Path("small.pth")) == (128, 64)
    assert _choose_preset(128, 64, None, Path("x"))[0] == "small"
    assert _choose_preset(256, 8, None, Path("x"))[0] == "imported"

    broken = dict(paper)
    broken["model.sub.sub.up_all.1.weight"] = np.zeros((3, 3, 4, 4), np.float32)
    with pytest.raises(UserError, match=r"model\.sub\.sub\.up_all\.1\.weight is \(3, 3, 4, 4\)"):
        detect_generator(broken, Path("broken.pth"))


def test_a_non_generator_and_a_truncated_file_get_clear_errors(reference_generator, tmp_path):
    discriminator = reference.randomise(reference.ReferencePatchDiscriminator(8), seed=5)
    not_generator = save(discriminator, tmp_path / "d" / "latest_net_G.pth", legacy=False)
    with pytest.raises(
        UserError, match=r"not an AffineGAN generator.*model\.0\.weight \(8, 6, 4, 4\)"
    ):
        import_pytorch(not_generator, tmp_path / "run_d")

    for legacy in (True, False):
        whole = save(reference_generator, tmp_path / f"whole_{legacy}.pth", legacy)
        truncated = tmp_path / f"truncated_{legacy}" / "latest_net_G.pth"
        truncated.parent.mkdir()
        truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        with pytest.raises(UserError, match="could not be read as a PyTorch checkpoint.*complete"):
            import_pytorch(truncated, tmp_path / f"run_truncated_{legacy}")
        assert not (tmp_path / f"run_truncated_{legacy}").exists()

    whole_model = tmp_path / "pickled" / "latest_net_G.pth"
    whole_model.parent.mkdir()
    torch.save(discriminator, whole_model)  # the module object, not its state_dict
    with pytest.raises(UserError, match="whole pickled model.*state_dict"):
        import_pytorch(whole_model, tmp_path / "run_pickled")

    text = tmp_path / "notes_net_G.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match="could not be read"):
        import_pytorch(text, tmp_path / "run_text")
    with pytest.raises(UserError, match="no \\*_net_G.pth"):
        import_pytorch((tmp_path / "empty").mkdir() or tmp_path / "empty", tmp_path / "run_empty")


@pytest.mark.slow
def test_imported_model_exports_and_passes_the_parity_checks(imported_runs, tmp_path):
    from affinegan_tf.export.exporter import export_model

    manifest = export_model(imported_runs["legacy"].run_dir, tmp_path / "exported")
    assert manifest["parity"] and all(item["passed"] for item in manifest["parity"])


@pytest.mark.slow
def test_fine_tuning_starts_from_the_imported_weights(imported_runs, reference_generator, tmp_path):
    """`fit` on an imported run folder restores it (step 0) and trains on."""
    import dataclasses
    import shutil

    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.config import RunConfig
    from affinegan_tf.toy import write_toy_dataset
    from affinegan_tf.training import fit

    data = tmp_path / "data"
    write_toy_dataset(data, num_videos=2, size=SIZE, expression="smile", seed=0)
    run_dir = tmp_path / "run"
    shutil.copytree(imported_runs["zip"].run_dir, run_dir)
    config = RunConfig.load(run_dir / "config.json")
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, data_dir=str(data)),
        train=dataclasses.replace(config.train, steps=1, checkpoint_every=1000),
    )
    result = fit(config, run_dir, force=True)
    assert result.step == 1
    model, saved = load_model(run_dir)
    assert saved.model.intensity_formula == "authors_code"
    # One small step moved the weights a little from the imported ones, not to a fresh init.
    face = photo(0)
    from affinegan_tf.rendering import generate_frames

    ours = generate_frames(model.generator, face, [0.5]).astype(int)
    theirs = reference.reference_frames(reference_generator, face, [0.5]).astype(int)
    assert np.abs(ours - theirs).mean() < 20


@pytest.mark.slow  # import, then a CLI fit in a subprocess: ~40 s
def test_cli_import_then_fine_tune(toy_data, tmp_path):
    """The README's commands: import (a `tiny`-shaped generator), then `fit` continues from it."""
    import subprocess

    from cli_helpers import console_script

    from affinegan_tf.checkpoints import load_model

    generator = reference.randomise(reference.ReferenceGenerator(64, 32), seed=8)
    source = save(generator, tmp_path / "smile" / "latest_net_G.pth", legacy=True)
    out = tmp_path / "run"
    result = run_cli(
        "import-pytorch", "--checkpoint", str(source.parent), "--out", str(out), cwd=tmp_path
    )
    assert "preset tiny" in result.stdout and "authors_code" in result.stdout
    again = subprocess.run(
        [console_script(), "import-pytorch", "--checkpoint", str(source), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    before = load_model(out)[0].generator.weights[0].numpy()
    # No --intensity-formula: the imported weights keep the formula they were trained with.
    run_cli(
        *("fit", "--data", str(toy_data), "--out", str(out), "--preset", "tiny"),
        *("--steps", "1", "--force"),
        cwd=tmp_path,
    )
    model, config = load_model(out)
    assert int(model.step.numpy()) == 1 and config.model.intensity_formula == "authors_code"
    after = model.generator.weights[0].numpy()
    # One step from the imported weights: close to them, not a fresh initialisation.
    assert 0 < np.abs(after - before).max() < 0.01


@pytest.mark.slow
def test_paper_size_generator_imports_as_the_paper_preset(tmp_path):
    """The real size: 74 M parameters, legacy format, detected as `paper`, same frames."""
    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.rendering import generate_frames

    generator = reference.randomise(reference.ReferenceGenerator(256, 64), seed=7)
    source = save(generator, tmp_path / "latest_net_G.pth", legacy=True)
    result = import_pytorch(source, tmp_path / "run")
    assert result.preset == "paper"
    model, _ = load_model(result.run_dir)
    face = photo(3)
    ours = generate_frames(model.generator, face, INTENSITIES).astype(int)
    theirs = reference.reference_frames(generator, face, INTENSITIES).astype(int)
    difference = np.abs(ours - theirs)
    assert difference.max() <= 2 and difference.mean() < 1.0, (difference.max(), difference.mean())
