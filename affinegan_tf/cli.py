"""The `affinegan-tf` command: parse flags, call one library function, print the result.

Each subcommand imports its module inside its handler, on purpose: `affinegan-tf --help` stays
instant and a command that does not need TensorFlow does not load it. (Elsewhere in the package
imports are at the top of the module.)
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from affinegan_tf import __version__
from affinegan_tf.errors import DataWarning, UserError
from affinegan_tf.startup import start_tensorflow
from affinegan_tf.toy.names import EXPRESSIONS, VIDEO_FORMATS


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0,0.5,1, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one intensity")
    return values


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings (skipped data) as one `warning: ...` message, without Python's file and
    source line; every other warning as Python shows it."""
    if issubclass(category, DataWarning):
        print(f"warning: {message}", file=file or sys.stderr, flush=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


# ----------------------------------------------------------------------------- data commands


def _make_toy_data(args: argparse.Namespace) -> int:
    from affinegan_tf.toy import write_toy_dataset

    summary = write_toy_dataset(
        args.out,
        num_videos=args.videos,
        size=args.size,
        expression=args.expression,
        video_format=args.format,
        seed=args.seed,
    )
    print(
        f"Wrote {summary['videos']} {summary['expression']} videos ({summary['frames']} frames, "
        f"{summary['size']}x{summary['size']}, {summary['format']}) to {summary['out']}, "
        f"plus {summary['test_videos']} held-out test videos of other people; true intensities "
        "in intensities.csv"
    )
    return 0


def _inspect_data(args: argparse.Namespace) -> int:
    from affinegan_tf.data.layout import format_inspection, inspect_data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = inspect_data(args.data, face_crop=args.face_crop, strict=args.strict)
    if args.json:
        # stdout stays one JSON object; what was skipped is still said on stderr.
        for warning in caught:
            _show_warning(warning.message, warning.category, warning.filename, warning.lineno)
        _print_json(report)
    else:
        print(format_inspection(report))  # lists the skipped entries itself
    return 0


def _prepare_pairs(args: argparse.Namespace) -> int:
    from affinegan_tf.pairs import PAIR_OPTIONS, format_summary, prepare_pairs, recipe_pair_options

    options = recipe_pair_options(args.pipeline) if args.pipeline else {}
    # Flags named like the options (--expression is the folder: --expression-name names it).
    given = {key: getattr(args, key, None) for key in PAIR_OPTIONS}
    given["expression"] = args.expression_name
    options.update({key: value for key, value in given.items() if value is not None})
    # The skipped pairs' DataWarning goes to stderr through `_show_warning`.
    card = prepare_pairs(args.neutral, args.expression, args.out, **options)
    print(format_summary(card, args.out))
    return 0


def _names(text: str) -> list[str]:
    """--hold-out: comma-separated pair names, or @FILE with one name per line."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise argparse.ArgumentTypeError(f"cannot read {path}: {error}") from None
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return [part.strip() for part in text.split(",") if part.strip()]


# ----------------------------------------------------------------------------- training


def _fit(args: argparse.Namespace) -> int:
    from affinegan_tf.recipes import config_from_flags
    from affinegan_tf.run_folder import default_run_dir, trained_intensity_formula
    from affinegan_tf.training import fit

    run_config = config_from_flags(
        data=args.data,
        pipeline=args.pipeline,
        preset_name=args.preset,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        local_d=args.local_d,
        face_crop=args.face_crop,
        seed=args.seed,
        learning_rate=args.learning_rate,
        checkpoint_every=args.checkpoint_every,
        mixed_precision=None if args.mixed_precision is None else True,
        mixed_precision_dtype=args.mixed_precision,
        intensity=args.intensity,
        intensity_discriminator=args.intensity_discriminator,
        intensity_formula=args.intensity_formula or trained_intensity_formula(args.out),
        output_mode=args.output_mode,
        strict=args.strict,
        ema_decay=args.ema_decay,
    )
    run_dir = args.out or default_run_dir(args.data)
    result = fit(run_config, run_dir, force=args.force)
    return 130 if result.interrupted else 0


def _import_pytorch(args: argparse.Namespace) -> int:
    from affinegan_tf.pytorch_import import import_pytorch

    result = import_pytorch(args.checkpoint, args.out, preset_name=args.preset, force=args.force)
    model = result.model
    files = ", ".join(f"{role} {Path(item['file']).name}" for role, item in result.sources.items())
    print(
        f"Imported {files} into {result.run_dir}: preset {result.preset} ({model.image_size}px, "
        f"ngf {model.ngf}), intensity formula {model.intensity_formula}. Use it with "
        f"generate/export/intensity/evaluate --model {result.run_dir}."
    )
    return 0


# ----------------------------------------------------------------------------- generation


def _generate(args: argparse.Namespace) -> int:
    from affinegan_tf.generation import generate_files

    outputs = generate_files(
        model_path=args.model,
        images=args.image,
        out=args.out,
        intensities=args.intensities,
        num_frames=args.frames,
        max_intensity=args.max_intensity,
        loop=args.loop,
        fps=args.fps,
        face_crop=args.face_crop,
        output_format=args.format,
        num_threads=args.threads,
    )
    for path in outputs:
        print(path)
    return 0


def _models(args: argparse.Namespace) -> int:
    from affinegan_tf.models import format_models, list_models

    models = list_models()
    if args.json:
        _print_json([model.to_dict() for model in models])
    else:
        print(format_models(models))
    return 0


def _export(args: argparse.Namespace) -> int:
    from affinegan_tf.export.exporter import export_model, format_export

    manifest = export_model(
        model_path=args.model,
        out_dir=args.out,
        formats=[part.strip() for part in args.formats.split(",") if part.strip()],
        fp16=args.fp16,
    )
    print(format_export(manifest, args.out))
    return 0


# ----------------------------------------------------------------------------- evaluation


def _intensity(args: argparse.Namespace) -> int:
    from affinegan_tf.evaluation.curves import format_curve, intensity_curve

    curve = intensity_curve(
        model_path=args.model, video=args.video, neutral=args.neutral, plot_path=args.plot
    )
    if args.json:
        _print_json(curve)
    else:
        print(format_curve(curve))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from affinegan_tf.evaluation.evaluate import evaluate_model
    from affinegan_tf.evaluation.report import format_report

    report = evaluate_model(model_path=args.model, data_dir=args.data, out_dir=args.out)
    if args.json:
        _print_json(report)
    else:
        print(format_report(report))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from affinegan_tf.demo import run_demo

    run_demo(
        out_dir=args.out,
        expression=args.expression,
        minutes=args.minutes,
        seed=args.seed,
        steps=args.steps,
    )
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="affinegan-tf",
        description="AffineGAN: turn a neutral face photo into an expression video, "
        "learned from unlabelled face videos.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's own start-up and runtime log lines (also accepted after COMMAND)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    toy = commands.add_parser(
        "make-toy-data", help="write the built-in synthetic face-video data set"
    )
    toy.add_argument("--out", required=True, help="folder to write (authors' layout)")
    toy.add_argument("--videos", type=int, default=32, help="number of videos (default 32)")
    toy.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    toy.add_argument("--expression", choices=EXPRESSIONS, default="smile")
    toy.add_argument("--format", choices=VIDEO_FORMATS, default="frames")
    toy.add_argument("--seed", type=int, default=0)
    toy.set_defaults(handler=_make_toy_data, tensorflow=False)

    inspect = commands.add_parser("inspect-data", help="show what training would read from DIR")
    inspect.add_argument("--data", required=True, help="data set root or folder of videos")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--face-crop", action="store_true", help="also check face detection")
    inspect.add_argument("--strict", action="store_true", help="any unusable video is an error")
    inspect.set_defaults(handler=_inspect_data, tensorflow=False)

    pairs = commands.add_parser(
        "prepare-pairs",
        help="neutral + expression photos of the same people -> training data (two-frame videos)",
        description="Matches photos by file name (same stem, else the person id before the "
        "first _ or -), crops the neutral photo exactly as `generate` crops a user's photo, "
        "registers the expression photo onto it on the eyes (dlib 5-point model, the eval "
        "extra), and writes DATA/train/img/<name>/0000.png (neutral) and 0001.png.",
    )
    pairs.add_argument("--neutral", required=True, help="folder of neutral photos")
    pairs.add_argument("--expression", required=True, help="folder of expression photos")
    pairs.add_argument("--out", required=True, help="data set folder to write (DATA)")
    pairs.add_argument(
        "--pipeline", help="recipe whose [pairs] table gives the defaults, e.g. smile_frl"
    )
    pairs.add_argument("--size", type=int, help="side of the written frames (default 256)")
    pairs.add_argument("--margin", type=float, help="face crop margin (default 0.35)")
    pairs.add_argument(
        "--hold-out",
        type=_names,
        help="pair names for DATA/test/img/: comma-separated, or @FILE (one per line)",
    )
    pairs.add_argument(
        "--expression-name", help="what the expression is called (default: folder name)"
    )
    pairs.add_argument("--licence", help="licence of the photos (recorded for exports)")
    pairs.add_argument("--attribution", help="attribution the licence requires")
    pairs.add_argument(
        "--blend-face",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="frame 0001 keeps only the expression photo's face (default: the recipe's, or off)",
    )
    pairs.add_argument(
        "--inbetweens",
        type=int,
        help="morphed frames between the photos of each training video (default: recipe's, or 0)",
    )
    pairs.set_defaults(handler=_prepare_pairs, tensorflow=False)

    fit = commands.add_parser("fit", help="train AffineGAN on a folder of face videos")
    fit.add_argument("--data", required=True, help="data set root or folder of videos")
    fit.add_argument(
        "--out",
        help="run folder; rerunning with the same --out resumes (default runs/<data>-<time>, a "
        "new folder each time)",
    )
    fit.add_argument("--pipeline", help="TOML recipe, e.g. pipelines/toy.toml")
    fit.add_argument("--preset", choices=("paper", "small", "tiny", "mobile"))
    length = fit.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="passes over the training videos")
    length.add_argument("--steps", type=int, help="total training steps")
    fit.add_argument("--batch-size", type=int)
    fit.add_argument("--local-d", choices=("auto", "on", "off"))
    fit.add_argument("--face-crop", action="store_true", default=None)
    fit.add_argument("--seed", type=int)
    fit.add_argument("--learning-rate", type=float)
    fit.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    fit.add_argument(
        "--mixed-precision",
        nargs="?",
        const="float16",
        choices=("float16", "bfloat16"),
        help="reduced-precision compute: float16 (default; GPUs, with loss scaling) or "
        "bfloat16 (CPUs with AVX512-BF16/AMX, recent GPUs)",
    )
    fit.add_argument("--intensity", choices=("affine", "mlp", "temporal"), help="ablations")
    fit.add_argument(
        "--intensity-discriminator", choices=("on", "off"), help="'off' is the no-D_a ablation"
    )
    fit.add_argument(
        "--intensity-formula",
        choices=("paper", "authors_code"),
        help="divide the projection by <fd,fd> (paper, default) or |fd| (the authors' code and "
        "their released models: keep it when fine-tuning an imported model)",
    )
    fit.add_argument(
        "--output-mode",
        choices=("image", "attention"),
        help="image: the decoder draws the whole frame (paper); attention: it draws a mask too "
        "and copies the rest from the input photo (a deviation: see the README)",
    )
    fit.add_argument("--strict", action="store_true", default=None)
    fit.add_argument(
        "--ema-decay", type=float, help="generate with an EMA of G's weights, e.g. 0.999 (0: off)"
    )
    fit.add_argument("--force", action="store_true", help="reuse a run folder of another config")
    fit.set_defaults(handler=_fit)

    imported = commands.add_parser(
        "import-pytorch", help="the authors' trained PyTorch weights (*_net_G.pth) as a run folder"
    )
    imported.add_argument(
        "--checkpoint", required=True, help="a *_net_G.pth file, or a folder holding one (+ D's)"
    )
    imported.add_argument("--out", required=True, help="run folder to write")
    imported.add_argument(
        "--preset", choices=("paper", "small", "tiny"), help="check against this preset"
    )
    imported.add_argument("--force", action="store_true", help="replace an existing run folder")
    imported.set_defaults(handler=_import_pytorch)

    generate = commands.add_parser("generate", help="make a GIF/MP4/PNGs from a neutral photo")
    generate.add_argument(
        "--model",
        required=True,
        help="run folder, export folder, SavedModel, .tflite, .onnx, or a shipped model's name "
        "(see `affinegan-tf models`)",
    )
    generate.add_argument(
        "--image", required=True, nargs="+", help="photo(s) or a folder of photos"
    )
    frames = generate.add_mutually_exclusive_group()
    frames.add_argument(
        "--intensities", type=_floats, help="e.g. 0,0.5,1 (1 is the apex of the expression)"
    )
    frames.add_argument("--frames", type=int, help="N frames from 0 to --max-intensity")
    generate.add_argument(
        "--max-intensity", type=float, default=1.0, help="end of the sweep (default 1: the apex)"
    )
    generate.add_argument("--loop", choices=("none", "pingpong"), default="none")
    generate.add_argument("--fps", type=float, default=10.0)
    generate.add_argument(
        "--face-crop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="crop the detected face (default: as the model's manifest says; centre square "
        "for run folders and models without one)",
    )
    generate.add_argument(
        "--out",
        required=True,
        help="OUT.gif, OUT.mp4 or DIR/ (PNG frames); a folder when there are several photos",
    )
    generate.add_argument(
        "--format",
        choices=("gif", "mp4", "png"),
        help="outputs named after the photos inside --out DIR/ (default gif for several photos)",
    )
    generate.add_argument("--threads", type=int, help="CPU threads for .tflite / .onnx models")
    generate.set_defaults(handler=_generate)

    models = commands.add_parser("models", help="list the shipped models `generate` finds by name")
    models.add_argument("--json", action="store_true", help="print a JSON list")
    models.set_defaults(handler=_models, tensorflow=False)

    export = commands.add_parser("export", help="export generate(image, intensities)")
    export.add_argument("--model", required=True, help="run folder (latest checkpoint)")
    export.add_argument("--out", required=True, help="e.g. exported/NAME (replaces an export)")
    export.add_argument(
        "--formats",
        default="savedmodel,tflite,onnx",
        help="comma-separated: savedmodel, tflite, onnx, web (browser page), or all",
    )
    export.add_argument("--fp16", action="store_true", help="also float16-weight TFLite")
    export.set_defaults(handler=_export)

    intensity = commands.add_parser("intensity", help="inferred intensity of every frame")
    intensity.add_argument("--model", required=True)
    intensity.add_argument("--video", required=True, help="video file, frame folder or photos")
    intensity.add_argument("--neutral", help="neutral frame (default: the first frame)")
    intensity.add_argument("--json", action="store_true")
    intensity.add_argument("--plot", help="write a PNG plot here")
    intensity.set_defaults(handler=_intensity)

    evaluate = commands.add_parser("evaluate", help="ACD metrics, L1/PSNR/SSIM, intensity")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--out", help="report folder")
    evaluate.set_defaults(handler=_evaluate)

    demo = commands.add_parser("demo", help="train and show the method on built-in data")
    demo.add_argument("--out", default="demo", help="folder for everything (default ./demo)")
    demo.add_argument("--expression", choices=EXPRESSIONS, default="smile")
    demo.add_argument(
        "--minutes", type=float, default=9.0, help="time budget of the whole demo (default 9)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--steps", type=int, help="train exactly this many steps instead of filling --minutes"
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the process exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # --verbose is a global flag; accept it after the command name too.
    verbose = "--verbose" in arguments
    arguments = [argument for argument in arguments if argument != "--verbose"]
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(arguments)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "tensorflow", True):
            start_tensorflow(verbose=verbose)
        return args.handler(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
