"""Finding the training videos in a data folder, and `inspect-data`'s report on them.

Accepted layouts (see the README for trees):

- the authors' layout: `<root>/train/img/<video>/<frames>`, optional mouth masks in
  `<root>/train/patch/<video>/<same file names>`, test items in `<root>/test/img/`;
  `--data` may also be `<root>/train` or `<root>/train/img` itself;
- any folder of video files (.mp4 .avi .mov .mkv .webm .gif) and/or frame folders, in any mix
  (no test split then); a folder holding only frame images is one video.

Unusable videos are skipped with one warning that lists them all, or, with `strict`, the first
one is an error. Hidden files and the frame cache folder are ignored.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affinegan_tf.data import media_files, video
from affinegan_tf.data.cache import (
    CACHE_FOLDER_NAME,
    FrameCache,
    neutral_frame_name,
    resolve_cache_dir,
)
from affinegan_tf.data.faces import face_box
from affinegan_tf.data.sources import SourceKind, VideoSource
from affinegan_tf.errors import DataWarning, UserError


@dataclass
class DatasetIndex:
    """What `find_videos` found.

    Attributes:
        root: The data folder as given (resolved).
        videos: The usable videos, in natural order of their names.
        skipped: (path, reason) of every video or file that will not be used.
        with_masks: Whether every usable video has mouth masks.
        test_items: Videos, frame folders and photos under `test/img/` (authors' layout only).
        layout: "authors" or "folder".
        videos_dir: The folder the videos were listed from.
    """

    root: Path
    videos: list[VideoSource]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    with_masks: bool = False
    test_items: list[Path] = field(default_factory=list)
    layout: str = "folder"
    videos_dir: Path | None = None


def _visible_entries(folder: Path) -> list[Path]:
    entries = [
        path
        for path in folder.iterdir()
        if not media_files.is_hidden(path) and path.name != CACHE_FOLDER_NAME
    ]
    return sorted(entries, key=lambda path: media_files.natural_sort_key(path.name))


def _resolve_videos_dir(root: Path, split: str) -> tuple[Path, Path | None, Path | None, str]:
    """(videos folder, masks folder or None, test folder or None, layout name) of a data root."""
    if (root / split / "img").is_dir():
        videos_dir = root / split / "img"
    elif (root / "img").is_dir():
        videos_dir = root / "img"
    elif (root / split).is_dir():
        videos_dir = root / split
    else:
        videos_dir = root
    if videos_dir.name != "img":
        return videos_dir, None, None, "folder"
    split_dir = videos_dir.parent
    patch_dir = split_dir / "patch"
    masks_dir = patch_dir if patch_dir.is_dir() and _has_subfolders(patch_dir) else None
    test_dir = split_dir.parent / "test" / "img"
    if split_dir.name != split or not test_dir.is_dir():
        test_dir = None
    return videos_dir, masks_dir, test_dir, "authors"


def _has_subfolders(folder: Path) -> bool:
    return any(path.is_dir() for path in _visible_entries(folder))


def _candidates(
    videos_dir: Path, masks_dir: Path | None
) -> tuple[list[VideoSource], list[tuple[str, str]]]:
    """Lists what in `videos_dir` could be a video; other entries go to the skipped list."""
    entries = _visible_entries(videos_dir)
    images = [path for path in entries if path.is_file() and media_files.is_image_file(path)]
    folders = [path for path in entries if path.is_dir()]
    video_files = [path for path in entries if path.is_file() and media_files.is_video_file(path)]
    if images and not folders and not video_files:
        # The folder itself is a frame folder: one video.
        return [VideoSource(videos_dir.name, videos_dir, "frame_folder")], []

    sources: list[VideoSource] = []
    skipped: list[tuple[str, str]] = []
    names: set[str] = set()
    for path in entries:
        if path.is_dir():
            kind: SourceKind = "frame_folder"
            name = path.name
        elif media_files.is_video_file(path):
            kind = "video_file"
            name = path.stem
        elif media_files.is_image_file(path):
            skipped.append(
                (
                    str(path),
                    "a single image, not a video: put the frames of each video in their own folder",
                )
            )
            continue
        else:
            skipped.append(
                (
                    str(path),
                    f"not a video ({', '.join(media_files.VIDEO_EXTENSIONS)}) or a folder of "
                    "frames",
                )
            )
            continue
        if name in names:
            skipped.append((str(path), f"another video is also named {name!r}; rename one"))
            continue
        names.add(name)
        mask_dir = masks_dir / name if masks_dir is not None else None
        sources.append(VideoSource(name, path, kind, mask_dir))
    return sources, skipped


def find_videos(
    data_dir: str | Path,
    split: str = "train",
    strict: bool = False,
    cache_dir: str | Path | None = None,
) -> DatasetIndex:
    """Finds the usable videos of a data set.

    Each candidate is probed (decoded once, then remembered in the cache folder) so that
    unreadable or truncated videos, clips of fewer than 2 frames and mismatched masks are found
    here, before training starts.

    Args:
        data_dir: Data set root (with `train/img/`), a `train/` or `img/` folder, or any folder
            of video files and/or frame folders.
        split: Which split of the authors' layout to read ("train" or "test").
        strict: Raise on the first unusable video instead of skipping it with a warning.
        cache_dir: Cache folder; None uses `<data_dir>/.affinegan_cache` or the user cache.

    Returns:
        The index of usable videos, skipped entries and test items.

    Raises:
        UserError: The folder is missing or empty, it holds no usable video, or (strict) one
            video is unusable. The message names the file.
    """
    if not str(data_dir).strip():
        raise UserError("No data folder given: pass --data DIR (a folder of face videos).")
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise UserError(f"Data folder {root} does not exist. Check the --data path.")
    if not root.is_dir():
        raise UserError(
            f"{root} is a file; --data must be a folder of videos or frame folders (or the data "
            "set root containing train/img/)."
        )
    root = root.resolve()
    videos_dir, masks_dir, test_dir, layout = _resolve_videos_dir(root, split)
    if not _visible_entries(videos_dir):
        raise UserError(
            f"Data folder {videos_dir} is empty. Put face videos (.mp4, .avi, ...) or folders of "
            "frames in it, or write the built-in set with `affinegan-tf make-toy-data`."
        )
    candidates, skipped = _candidates(videos_dir, masks_dir)
    cache = FrameCache(resolve_cache_dir(root, cache_dir))
    videos = []
    for source in candidates:
        try:
            info = cache.probe(source)
        except UserError as error:
            if strict:
                raise UserError(f"{error} (--strict: every video must be usable)") from None
            skipped.append((str(source.path), str(error)))
            continue
        source.frames, source.width, source.height = info.frames, info.width, info.height
        videos.append(source)
    if not videos:
        reasons = "\n".join(f"  {path}: {reason}" for path, reason in skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        raise UserError(
            f"No usable video in {videos_dir}. Expected video files or folders of at least 2 "
            f"frames each.{' Skipped:' if skipped else ''}\n{reasons}{more}".rstrip()
        )
    test_items = []
    if test_dir is not None:
        test_items = [
            path
            for path in _visible_entries(test_dir)
            if path.is_dir() or media_files.is_image_file(path) or media_files.is_video_file(path)
        ]
    index = DatasetIndex(
        root=root,
        videos=videos,
        skipped=skipped,
        with_masks=all(source.mask_dir is not None for source in videos),
        test_items=test_items,
        layout=layout,
        videos_dir=videos_dir,
    )
    warn_skipped(skipped, videos_dir)
    return index


def warn_skipped(skipped: list[tuple[str, str]], where: Path | str) -> None:
    """One DataWarning listing every skipped entry with its reason (nothing when empty)."""
    if not skipped:
        return
    lines = "\n".join(f"  {path}: {reason}" for path, reason in skipped)
    warnings.warn(
        f"Skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} of {where} "
        f"(use --strict to make this an error):\n{lines}",
        DataWarning,
        stacklevel=3,
    )


# ----------------------------------------------------------------------------- inspect-data


def inspect_data(
    data_dir: str | Path,
    face_crop: bool = False,
    strict: bool = False,
    face_margin: float = 0.35,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """What training would read from a data folder, as a JSON-ready dict.

    Args:
        data_dir: As for `find_videos`.
        face_crop: Also check that a face is found in every video's neutral frame; videos
            without one are reported as skipped.
        strict: Any unusable video (or missing face) is an error.
        face_margin: Margin of the face crop, for the reported boxes.
        cache_dir: As for `find_videos`.

    Returns:
        Keys: `root`, `layout` ("authors" or "folder"), `videos`, `frames` (total of the usable
        videos), `with_masks`, `resolution` ({"min": [w, h], "max": [w, h]}), `test_items`,
        `skipped` (list of {"path", "reason"}) and `per_video` (list of {"name", "path", "kind",
        "frames", "width", "height", "masks"}, plus "face_box" [x, y, side] with face_crop).

    Raises:
        UserError: As `find_videos`, or with `face_crop` when no face is found in any video.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the report lists the skipped entries
        index = find_videos(data_dir, strict=strict, cache_dir=cache_dir)
    videos = list(index.videos)
    skipped = list(index.skipped)
    boxes: dict[str, list[int]] = {}
    if face_crop:
        kept = []
        for source in videos:
            try:
                # The same frame and the same check as FrameCache.load with face_crop.
                neutral = video.read_frames_at(source.path, [0])[0]
                box = face_box(neutral, face_margin, neutral_frame_name(source))
            except UserError as error:
                if strict:
                    raise UserError(f"{error} (--strict: every video must be usable)") from None
                skipped.append((str(source.path), str(error)))
                continue
            boxes[source.name] = list(box)
            kept.append(source)
        if not kept:
            raise UserError(
                f"No face found in the neutral frame of any video in {index.videos_dir}. "
                "Drop --face-crop (frames are then centre-cropped) or use face videos."
            )
        videos = kept
    warn_skipped(skipped, index.videos_dir or index.root)
    widths = [source.width for source in videos]
    heights = [source.height for source in videos]
    per_video = []
    for source in videos:
        entry = {
            "name": source.name,
            "path": str(source.path),
            "kind": source.kind,
            "frames": source.frames,
            "width": source.width,
            "height": source.height,
            "masks": source.mask_dir is not None,
        }
        if source.name in boxes:
            entry["face_box"] = boxes[source.name]
        per_video.append(entry)
    return {
        "root": str(index.root),
        "videos_dir": str(index.videos_dir),
        "layout": index.layout,
        "videos": len(videos),
        "frames": sum(source.frames for source in videos),
        "with_masks": bool(videos) and all(source.mask_dir is not None for source in videos),
        "resolution": {
            "min": [min(widths), min(heights)],
            "max": [max(widths), max(heights)],
        },
        "test_items": len(index.test_items),
        "skipped": [{"path": path, "reason": reason} for path, reason in skipped],
        "per_video": per_video,
    }


def format_inspection(report: dict[str, Any]) -> str:
    """Human-readable text of an `inspect_data` report."""
    resolution = report["resolution"]
    low, high = resolution["min"], resolution["max"]
    size = f"{low[0]}x{low[1]}" if low == high else f"{low[0]}x{low[1]} to {high[0]}x{high[1]}"
    masks = "yes (local discriminator on by default)" if report["with_masks"] else "no"
    lines = [
        f"Data: {report['root']} ({report['layout']} layout, videos in {report['videos_dir']})",
        f"  {report['videos']} usable video{'s' if report['videos'] != 1 else ''}, "
        f"{report['frames']} frames, frame size {size}",
        f"  mouth masks: {masks}",
        f"  test items: {report['test_items']}",
    ]
    per_video = report.get("per_video", [])
    if per_video:
        lines.append("  videos:")
        for entry in per_video[:20]:
            extra = "  masks" if entry["masks"] else ""
            if "face_box" in entry:
                extra += "  face box x={} y={} side={}".format(*entry["face_box"])
            lines.append(
                f"    {entry['name']}: {entry['frames']} frames, "
                f"{entry['width']}x{entry['height']}{extra}"
            )
        if len(per_video) > 20:
            lines.append(f"    ... and {len(per_video) - 20} more")
    skipped = report["skipped"]
    if skipped:
        lines.append(f"  skipped {len(skipped)}:")
        lines.extend(f"    {entry['path']}: {entry['reason']}" for entry in skipped)
    else:
        lines.append("  skipped: none")
    return "\n".join(lines)
