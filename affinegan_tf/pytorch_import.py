"""`affinegan-tf import-pytorch`: the authors' trained PyTorch models as a run folder of ours.

Their generator (`<name>_net_G.pth`, a state_dict) is pix2pix's nested U-Net with a second encoder:
the block of U-Net level i has the key prefix `model.` + `sub.` * i and holds `down_base.*` (E0's
conv of that level), `down_res.*` (Ed's) and `up_all.*` (the decoder's transposed conv that
leaves the level). Conv weights are [out, in, kh, kw], transposed-conv weights [in, out, kh, kw];
both become Keras's [kh, kw, ., .] by the same axis permutation. Their discriminators
(`_net_D.pth` global, `_net_D_Patch.pth` local, `_net_D_alpha.pth` intensity) map onto ours
layer by layer. Preset (levels, widths, K) is read from the tensor shapes.

torch is imported here only, and only when a file is read: it is the optional extra `pytorch`.
The result is an ordinary run folder (config.json + a training checkpoint at step 0) that
generate, export, intensity, evaluate and fit (fine-tuning) accept, plus import.json recording the
source files and their sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affinegan_tf.config import PRESETS, ModelConfig, RunConfig, TrainConfig
from affinegan_tf.errors import UserError

IMPORT_FILE = "import.json"
GENERATOR_SUFFIX = "_net_G.pth"
DISCRIMINATOR_SUFFIXES = {
    "global": "_net_D.pth",
    "local": "_net_D_Patch.pth",
    "intensity": "_net_D_alpha.pth",
}
# Buffers that PyTorch < 0.4 saved for InstanceNorm layers (no learned parameters): ignored.
IGNORED_ENDINGS = (".running_mean", ".running_var", ".num_batches_tracked")
# Their PatchGAN (NLayerDiscriminator, 3 layers): Sequential indices of the five convs.
PATCH_CONV_INDICES = (0, 2, 5, 8, 11)
# Their AlphaDiscriminator: Sequential indices of the three Linear layers.
ALPHA_LINEAR_INDICES = (0, 2, 4)
NOTE = (
    "Imported from the authors' PyTorch weights. Intensity is inferred with their code's formula "
    "|<f_t - f_0, f_d>| / |f_d| (intensity_formula = authors_code). Generation here runs without "
    "dropout; their generate.py keeps dropout on unless --eval."
)


@dataclass(frozen=True)
class ImportResult:
    """What `import_pytorch` wrote."""

    run_dir: Path
    preset: str
    model: ModelConfig
    sources: dict  # role -> {"file", "sha256", "format"}


# ----------------------------------------------------------------------------- reading .pth


def _torch():
    try:
        import torch
    except ImportError:
        raise UserError(
            "Reading PyTorch .pth files needs PyTorch, the optional extra `pytorch`: "
            "pip install 'affinegan-tf[pytorch]' --extra-index-url "
            "https://download.pytorch.org/whl/cpu (the index gives the small CPU-only wheel)."
        ) from None
    return torch


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state_dict file (legacy pre-1.6 or zip format) as float32 arrays.

    Raises:
        UserError: the file cannot be read (truncated, not PyTorch) or holds no state_dict.
    """
    torch = _torch()
    try:
        # weights_only: tensors and containers only; a .pth cannot run code on load.
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        if "Weights only load failed" in str(error) and zipfile.is_zipfile(path):
            raise UserError(
                f"{path} holds Python objects besides tensors (a whole pickled model?), which "
                "are not loaded because unpickling them could run code. Save and pass its "
                "state_dict() instead."
            ) from error
        # The first sentence only: torch's advice to load with weights_only=False is not ours.
        detail = (str(error).splitlines() or ["no detail"])[0].split(". ")[0][:200]
        raise UserError(
            f"{path} could not be read as a PyTorch checkpoint ({error.__class__.__name__}: "
            f"{detail}). Is the file complete? It has {path.stat().st_size} bytes; download it "
            "again."
        ) from error
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise UserError(
            f"{path} is a PyTorch file but not a state_dict (a mapping of names to tensors); "
            f"it holds a {type(loaded).__name__}. Pass the authors' <name>{GENERATOR_SUFFIX}."
        )
    tensors = {}
    for key, value in loaded.items():
        # Saved from a torch.nn.DataParallel wrapper: drop its prefix.
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.endswith(IGNORED_ENDINGS):
            continue
        tensors[key] = value.detach().to(torch.float32).numpy()
    return tensors


def _listing(tensors: dict[str, np.ndarray], limit: int = 8) -> str:
    shown = [f"{key} {tuple(value.shape)}" for key, value in list(tensors.items())[:limit]]
    more = f" and {len(tensors) - limit} more" if len(tensors) > limit else ""
    return f"{len(tensors)} tensors: " + ", ".join(shown) + more


# ----------------------------------------------------------------------------- generator layout


def _level_prefix(level: int) -> str:
    return "model." + "sub." * level


def _generator_keys(level: int, levels: int) -> dict[str, str]:
    """Our layer -> their key stem, for U-Net level `level` of `levels`."""
    prefix = _level_prefix(level)
    conv = 0 if level == 0 else 1  # inner levels start with a LeakyReLU
    return {
        f"base_encoder/down_{level}": f"{prefix}down_base.{conv}",
        f"delta_encoder/down_{level}": f"{prefix}down_res.{conv}",
        f"decoder/up_{level}": f"{prefix}up_all.1",  # after the ReLU
    }


def _expected_generator_shapes(config: ModelConfig) -> dict[str, tuple]:
    channels = config.encoder_channels()
    levels = len(channels)
    shapes = {}
    for level in range(levels):
        keys = _generator_keys(level, levels)
        inputs = 3 if level == 0 else channels[level - 1]
        for layer in ("base_encoder", "delta_encoder"):
            stem = keys[f"{layer}/down_{level}"]
            shapes[f"{stem}.weight"] = (channels[level], inputs, 4, 4)
            shapes[f"{stem}.bias"] = (channels[level],)
        up_inputs = channels[level] * (1 if level == levels - 1 else 2)
        up_outputs = 3 if level == 0 else channels[level - 1]
        stem = keys[f"decoder/up_{level}"]
        shapes[f"{stem}.weight"] = (up_inputs, up_outputs, 4, 4)
        shapes[f"{stem}.bias"] = (up_outputs,)
    return shapes


def detect_generator(tensors: dict[str, np.ndarray], source: Path) -> tuple[int, int]:
    """(image_size, ngf) of an AffineGAN generator state_dict, from its nesting and shapes.

    Raises:
        UserError: the tensors are not an AffineGAN generator, listing what was found.
    """
    first = tensors.get("model.down_base.0.weight")
    if first is None or first.ndim != 4 or "model.down_res.0.weight" not in tensors:
        raise UserError(
            f"{source} is not an AffineGAN generator: expected the authors' nested U-Net keys "
            f"(model.down_base.0.weight, model.down_res.0.weight, model.sub...), found "
            f"{_listing(tensors)}."
        )
    levels = 1 + max(key.count("sub.") for key in tensors if key.startswith("model."))
    ngf = int(first.shape[0])
    try:
        config = ModelConfig(image_size=2**levels, ngf=ngf)
    except UserError as error:
        raise UserError(f"{source}: a {levels}-level U-Net is not supported ({error})") from None
    expected = _expected_generator_shapes(config)
    problems = [f"missing {key}" for key in expected if key not in tensors]
    problems += [f"unexpected {key}" for key in tensors if key not in expected]
    problems += [
        f"{key} is {tuple(tensors[key].shape)}, expected {shape}"
        for key, shape in expected.items()
        if key in tensors and tuple(tensors[key].shape) != shape
    ]
    if problems:
        raise UserError(
            f"{source} does not have the shapes of an AffineGAN generator with {levels} levels "
            f"and ngf {ngf}: {'; '.join(problems[:6])}"
            f"{f' (and {len(problems) - 6} more)' if len(problems) > 6 else ''}."
        )
    return config.image_size, ngf


def _check_layer(tensors: dict, stems: list[str], source: Path, what: str) -> None:
    expected = {f"{stem}.{part}" for stem in stems for part in ("weight", "bias")}
    if set(tensors) != expected:
        raise UserError(
            f"{source} is not the authors' {what}: expected the keys "
            f"{', '.join(sorted(expected))}; found {_listing(tensors)}."
        )


# ----------------------------------------------------------------------------- the import


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    # Conv [out, in, kh, kw] -> [kh, kw, in, out]; ConvTranspose [in, out, kh, kw] -> [kh, kw, out,
    # in]: Keras's layouts of the two, by the same permutation.
    return np.transpose(weight, (2, 3, 1, 0))


def _assign(layer, kernel: np.ndarray, bias: np.ndarray, where: str) -> None:
    if tuple(layer.kernel.shape) != kernel.shape or tuple(layer.bias.shape) != bias.shape:
        raise UserError(
            f"{where}: shapes {kernel.shape} / {bias.shape} do not fit our layer "
            f"{tuple(layer.kernel.shape)} / {tuple(layer.bias.shape)}."
        )
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)


def _load_generator(generator, tensors: dict, levels: int) -> None:
    blocks = {
        "base_encoder": {block.name: block for block in generator.base_encoder.blocks},
        "delta_encoder": {block.name: block for block in generator.delta_encoder.blocks},
        "decoder": {block.name: block for block in generator.decoder.blocks},
    }
    for level in range(levels):
        for ours, stem in _generator_keys(level, levels).items():
            network, block = ours.split("/")
            _assign(
                blocks[network][block].conv,
                _conv_kernel(tensors[f"{stem}.weight"]),
                tensors[f"{stem}.bias"],
                stem,
            )


def _load_patch_discriminator(discriminator, tensors: dict, source: Path) -> None:
    stems = [f"model.{index}" for index in PATCH_CONV_INDICES]
    _check_layer(tensors, stems, source, "PatchGAN discriminator (NLayerDiscriminator, 3 layers)")
    for layer, stem in zip([*discriminator.convs, discriminator.logits], stems, strict=True):
        _assign(layer, _conv_kernel(tensors[f"{stem}.weight"]), tensors[f"{stem}.bias"], stem)


def _load_intensity_discriminator(discriminator, tensors: dict, source: Path) -> None:
    stems = [f"net.{index}" for index in ALPHA_LINEAR_INDICES]
    _check_layer(tensors, stems, source, "intensity discriminator (AlphaDiscriminator)")
    for layer, stem in zip([*discriminator.hidden, discriminator.logit], stems, strict=True):
        _assign(layer, tensors[f"{stem}.weight"].T, tensors[f"{stem}.bias"], stem)


def find_sources(checkpoint: Path) -> dict[str, Path]:
    """The generator file and the discriminator files beside it, by role."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        candidates = sorted(checkpoint.glob(f"*{GENERATOR_SUFFIX}"))
        if not candidates:
            raise UserError(
                f"{checkpoint} holds no *{GENERATOR_SUFFIX} file. Pass the authors' generator "
                f"(e.g. latest{GENERATOR_SUFFIX}) or the folder that holds it."
            )
        latest = [path for path in candidates if path.name == f"latest{GENERATOR_SUFFIX}"]
        if len(candidates) > 1 and not latest:
            raise UserError(
                f"{checkpoint} holds several generators ({', '.join(p.name for p in candidates)})"
                "; pass the one to import."
            )
        generator = latest[0] if latest else candidates[0]
    elif checkpoint.is_file():
        generator = checkpoint
    else:
        raise UserError(f"{checkpoint} does not exist.")
    sources = {"generator": generator}
    if generator.name.endswith(GENERATOR_SUFFIX):
        stem = generator.name[: -len(GENERATOR_SUFFIX)]
        for role, suffix in DISCRIMINATOR_SUFFIXES.items():
            path = generator.with_name(stem + suffix)
            if path.is_file():
                sources[role] = path
    return sources


def _choose_preset(image_size: int, ngf: int, preset_name: str | None, source: Path):
    if preset_name is not None:
        if preset_name not in PRESETS:
            raise UserError(f"Unknown preset {preset_name!r}; choose one of: {', '.join(PRESETS)}.")
        chosen = PRESETS[preset_name]
        if (chosen.image_size, chosen.ngf, chosen.upsample) != (image_size, ngf, "transpose"):
            raise UserError(
                f"--preset {preset_name} is {chosen.image_size}px, ngf {chosen.ngf}, "
                f"{chosen.upsample} upsampling, but {source} holds a {image_size}px generator "
                f"with ngf {ngf} and transposed convolutions. Leave --preset out."
            )
        return preset_name, chosen
    for name, candidate in PRESETS.items():
        if (candidate.image_size, candidate.ngf, candidate.upsample) == (
            image_size,
            ngf,
            "transpose",
        ):
            return name, candidate
    return "imported", ModelConfig(image_size=image_size, ngf=ngf, ndf=64)


def _prepare_out(out: Path, force: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not force:
        raise UserError(f"{out} already exists. Choose another --out, or --force to replace it.")
    if not (out / "config.json").is_file():
        raise UserError(
            f"{out} exists and is not a run folder (no config.json); --force only replaces run "
            "folders. Choose another --out."
        )


def import_pytorch(
    checkpoint: str | Path,
    out: str | Path,
    preset_name: str | None = None,
    force: bool = False,
) -> ImportResult:
    """Converts the authors' PyTorch weights into a run folder.

    Args:
        checkpoint: A `*_net_G.pth` file, or a folder holding one (plus optional discriminators).
        out: The run folder to write.
        preset_name: Check the weights against this preset instead of detecting it.
        force: Replace an existing run folder at `out`.

    Returns:
        What was written.
    """
    import tensorflow as tf

    from affinegan_tf.checkpoints import CONFIG_FILE, TrainingCheckpoint
    from affinegan_tf.gan import AffineGAN
    from affinegan_tf.optimizers import make_optimizers

    out = Path(out)
    sources = find_sources(Path(checkpoint))
    _prepare_out(out, force)
    tensors = {role: read_state_dict(path) for role, path in sources.items()}
    image_size, ngf = detect_generator(tensors["generator"], sources["generator"])
    name, preset_config = _choose_preset(image_size, ngf, preset_name, sources["generator"])
    ndf = preset_config.ndf
    for role in ("global", "local"):
        if role in tensors and "model.0.weight" in tensors[role]:
            ndf = int(tensors[role]["model.0.weight"].shape[0])
    num_targets = preset_config.num_targets
    if "intensity" in tensors and "net.0.weight" in tensors["intensity"]:
        num_targets = int(tensors["intensity"]["net.0.weight"].shape[1])
    model_config = dataclasses.replace(
        preset_config,
        ndf=ndf,
        num_targets=num_targets,
        intensity_formula="authors_code",
        local_discriminator="on" if "local" in sources else "off",
    )
    run_config = RunConfig(model=model_config, train=TrainConfig(), preset=name)

    # The local D is always built and saved (fresh unless their D_Patch came along), so that
    # fine-tuning on data with mouth masks restores it like every other variable.
    model = AffineGAN(model_config, use_local_discriminator=True, seed=run_config.train.seed)
    total_steps = run_config.train.total_steps(1)
    model.compile(*make_optimizers(run_config.train, total_steps), run_config.train.loss_weights)
    _load_generator(model.generator, tensors["generator"], model_config.levels)
    if "global" in tensors:
        _load_patch_discriminator(model.global_discriminator, tensors["global"], sources["global"])
    if "local" in tensors:
        _load_patch_discriminator(model.local_discriminator, tensors["local"], sources["local"])
    if "intensity" in tensors:
        _load_intensity_discriminator(
            model.intensity_discriminator, tensors["intensity"], sources["intensity"]
        )

    torch = _torch()
    described = {
        role: {
            "file": str(path.resolve()),
            "sha256": _sha256(path),
            "format": "zip" if zipfile.is_zipfile(path) else "legacy (PyTorch < 1.6)",
        }
        for role, path in sources.items()
    }
    staging = out.with_name(f".{out.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        (staging / CONFIG_FILE).write_text(run_config.to_json())
        TrainingCheckpoint(model, staging, keep=1).save()
        record = {
            "sources": described,
            "preset": name,
            "image_size": image_size,
            "ngf": ngf,
            "ndf": ndf,
            "num_targets": num_targets,
            "intensity_formula": model_config.intensity_formula,
            "torch_version": torch.__version__,
            "tensorflow_version": tf.__version__,
            "note": NOTE,
        }
        (staging / IMPORT_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(run_dir=out, preset=name, model=model_config, sources=described)
