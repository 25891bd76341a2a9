"""Writing an evaluation report: summary.md (also the CLI's text), metrics.json, a contact sheet
and GIFs of real | generated side by side. The numbers come from `scoring.py`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from affinegan_tf.animation import write_animation
from affinegan_tf.errors import UserError
from affinegan_tf.evaluation.plots import contact_sheet, write_png
from affinegan_tf.evaluation.scoring import ACD_NAMES, ROWS, VideoResult

SHEET_VIDEOS = 4
SHEET_COLUMNS = 8


# ----------------------------------------------------------------------------- the whole set


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean(value):
    """NaN/inf -> None, recursively, so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {key: clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    if isinstance(value, (np.floating, float)):
        return _finite_or_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


ROW_TITLES = {
    "generated": "generated (this model)",
    "real": "real videos (reference)",
    "copy_input": "copy the input (baseline)",
}


def format_report(report: dict) -> str:
    """The report as markdown text (also summary.md)."""
    rows, faces = report["rows"], report["faces"]
    lines = [
        f"# Evaluation of {report['model']}",
        "",
        f"{report['videos']} videos of {report['data']} at {report['image_size']}px; intensity "
        f"mode {report['intensity_mode']}, intensity discriminator "
        f"{'on' if report['intensity_discriminator'] else 'off'}; intensities calibrated by the "
        f"model's apex {report.get('intensity_apex', 1.0):.4g} (1 = the apex).",
        f"Embedding: {report['embedding']}.",
        "",
        "| row | ACD-I | ACD-C | ACD-G | L1 | PSNR (dB) | SSIM | frames without a face |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        values = rows[row]
        lines.append(
            f"| {ROW_TITLES[row]} | {_number(values['acd_identity'])} | "
            f"{_number(values['acd_consistency'])} | {_number(values['acd_ground_truth'])} | "
            f"{_number(values['l1'], 4)} | {_number(values['psnr'], 2)} | "
            f"{_number(values['ssim'])} | {faces[row]['missing']} / {faces[row]['frames']} |"
        )
    skipped = {
        row: sum(report["pairs"][row][name]["skipped_pairs"] for name in ACD_NAMES) for row in ROWS
    }
    lines += [
        "",
        "ACD-I: frames 1..T-1 vs the input frame; ACD-C: all frame pairs of a video; ACD-G: "
        "generated vs real frame t (t >= 1). Means over videos; L1 on pixels in [0, 1].",
    ]
    if any(skipped.values()):
        lines.append(
            "Comparisons left out because a frame had no face: "
            + ", ".join(f"{row} {count}" for row, count in skipped.items())
            + " (see metrics.json `pairs`)."
        )
    by_kind = report.get("by_kind")
    if by_kind:
        lines += [
            "",
            "Generated videos per sequence kind (copy-the-input baseline in brackets):",
            "",
            "| kind | videos | ACD-I | ACD-C | ACD-G | L1 | SSIM |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, entry in by_kind.items():
            generated, copied = entry["generated"], entry["copy_input"]
            lines.append(
                f"| {kind} | {entry['videos']} | {_number(generated['acd_identity'])} | "
                f"{_number(generated['acd_consistency'])} | "
                f"{_number(generated['acd_ground_truth'])} "
                f"({_number(copied['acd_ground_truth'])}) | {_number(generated['l1'], 4)} "
                f"({_number(copied['l1'], 4)}) | {_number(generated['ssim'])} "
                f"({_number(copied['ssim'])}) |"
            )
    intensity = report.get("intensity")
    if intensity:
        lines += [
            "",
            "Inferred vs true intensity (Spearman over frames 1..T-1, mean over videos):",
            "",
            "| kind | Spearman | videos |",
            "|---|---|---|",
        ]
        for kind, entry in intensity["spearman_by_kind"].items():
            undefined = f" ({entry['undefined']} undefined)" if entry["undefined"] else ""
            lines.append(
                f"| {kind} | {_number(entry['spearman'])} | {entry['videos']}{undefined} |"
            )
        lines.append(f"| all | {_number(intensity['spearman_all'])} | {intensity['videos']} |")
    if report.get("skipped"):
        lines += ["", f"Skipped {len(report['skipped'])} unusable entries (see metrics.json)."]
    if report.get("report_dir"):
        lines += ["", f"Report folder: {report['report_dir']}"]
    return "\n".join(lines)


def _sheet_videos(results: list[VideoResult]) -> list[VideoResult]:
    """A few videos for the contact sheet: one per kind first, then in order."""
    chosen: list[VideoResult] = []
    seen_kinds: set[str] = set()
    for result in results:
        if result.kind is not None and result.kind not in seen_kinds:
            chosen.append(result)
            seen_kinds.add(result.kind)
    for result in results:
        if len(chosen) >= SHEET_VIDEOS:
            break
        if result not in chosen:
            chosen.append(result)
    return chosen[:SHEET_VIDEOS]


def _stack_videos(videos: list[np.ndarray]) -> np.ndarray:
    """Videos [T_i, H, W, 3] one above the other; shorter ones hold their last frame."""
    length = max(len(video) for video in videos)
    padded = [
        np.concatenate([video, np.repeat(video[-1:], length - len(video), axis=0)])
        for video in videos
    ]
    return np.concatenate(padded, axis=1)


def write_report(report: dict, results: list[VideoResult], out_dir: Path) -> None:
    """metrics.json, summary.md, contact_sheet.png and GIFs of real | generated side by side
    (one per contact-sheet video and `gifs/overview.gif` with them all).

    Everything is written into a temporary folder first and moved into `out_dir` when complete.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder for the report.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (temporary / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=False))
        (temporary / "summary.md").write_text(format_report(report) + "\n")
        chosen = _sheet_videos(results)
        rows = []
        for result in chosen:
            label = f"{result.name}\n{result.kind or ''}".strip()
            rows.append((f"{label}\nreal", result.real_frames))
            rows.append(("generated", result.generated_frames))
        if rows:
            write_png(contact_sheet(rows, columns=SHEET_COLUMNS), temporary / "contact_sheet.png")
        pairs = [
            np.concatenate([result.real_frames, result.generated_frames], axis=2)
            for result in chosen
        ]
        for result, pair in zip(chosen, pairs, strict=True):
            write_animation(pair, temporary / "gifs" / f"{result.name}.gif", fps=8)
        if pairs:
            write_animation(_stack_videos(pairs), temporary / "gifs" / "overview.gif", fps=8)
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in temporary.rglob("*"):
            if item.is_file():
                target = out_dir / item.relative_to(temporary)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
