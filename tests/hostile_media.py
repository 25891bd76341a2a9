"""A data folder as it looks after a bad copy: a few real clips among many broken entries.

Built into a temporary folder by the tests (nothing is checked in). Every broken entry is one of:
truncated, bit-flipped or header-scrambled copies of a real clip, empty files and folders, random
bytes, wrong extensions, one-frame clips, frame folders with one corrupt frame, and images whose
headers claim far more pixels than any photo (header-only PNG/JPEG files).
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

HUGE_SIDE = 40_000  # 1.6 gigapixels: over OpenCV's own limit and ours


def oversized_png(path: Path, width: int = HUGE_SIDE, height: int = HUGE_SIDE) -> Path:
    """A PNG whose IHDR claims width x height but whose pixel data stops at once."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def oversized_jpeg(path: Path, width: int = HUGE_SIDE, height: int = HUGE_SIDE) -> Path:
    """A JPEG whose SOF0 marker claims width x height (at most 65535), after an APP0 segment."""
    small = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes()
    start = small.index(b"\xff\xc0")
    length = struct.unpack(">H", small[start + 2 : start + 4])[0]
    segment = bytearray(small[start : start + 2 + length])
    segment[5:9] = struct.pack(">HH", height, width)
    path.write_bytes(small[:start] + bytes(segment) + small[start + 2 + length :])
    return path


def premature_end_jpeg(path: Path) -> Path:
    """Cuts a JPEG's scan in half and closes it with an end marker: OpenCV still decodes it (the
    missing half grey) while libjpeg writes `Corrupt JPEG data: premature end of data segment`
    straight to file descriptor 2."""
    data = path.read_bytes()
    scan = data.index(b"\xff\xda")
    path.write_bytes(data[: scan + (len(data) - scan) // 2] + b"\xff\xd9")
    return path


def write_frames(folder: Path, frames: np.ndarray, extension: str = ".jpg") -> list[Path]:
    """Writes frames (RGB) as frame_0001.jpg ... and returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames, start=1):
        path = folder / f"frame_{index:04d}{extension}"
        cv2.imwrite(str(path), np.ascontiguousarray(frame[:, :, ::-1]))
        paths.append(path)
    return paths


def write_mp4(path: Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    """An MJPG/MP4V clip readable by OpenCV (RGB frames)."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path


def face_like_frames(count: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Smoothly changing frames (a moving bright disc on noise): decodable and non-trivial."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    frames = []
    for index in range(count):
        frame = background.copy()
        centre = (size // 2 + index, size // 2)
        cv2.circle(frame, centre, size // 4, (230, 200, 170), -1)
        frames.append(frame)
    return np.stack(frames)


def build_hostile_folder(
    root: Path, good_clips: list[Path], per_kind: int = 2, seed: int = 0
) -> dict[str, list[str]]:
    """Writes the folder; returns its entries (paths as strings) by expected verdict.

    Args:
        root: The folder to create (must not exist).
        good_clips: Real video files; each is copied in once as a good entry, and the first is
            the source of the damaged copies.
        per_kind: How many entries of each broken kind.
        seed: Seed of the random damage.

    Returns:
        {"good": usable entries, "bad": entries that must be skipped, "either": bit-flipped
        clips, which may or may not still decode}.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    good: list[str] = []
    bad: list[str] = []
    for number, clip in enumerate(good_clips):
        target = root / f"good_{number:02d}{clip.suffix.lower()}"
        shutil.copyfile(clip, target)
        good.append(str(target))

    def add(path: Path) -> None:
        bad.append(str(path))

    either: list[str] = []
    for number in range(per_kind):
        clip = good_clips[number % len(good_clips)]
        source = clip.read_bytes()
        suffix = clip.suffix.lower()
        cut = int(len(source) * (0.1 + 0.6 * number / max(per_kind, 1)))
        path = root / f"truncated_{number:02d}{suffix}"
        path.write_bytes(source[:cut])
        add(path)

        flipped = bytearray(source)
        positions = rng.integers(len(source) // 4, len(source), 200)
        for position in positions:
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        path = root / f"bitflip_{number:02d}{suffix}"
        path.write_bytes(bytes(flipped))
        # A bit-flipped clip may still decode (the damage only changes pixels): either verdict.
        either.append(str(path))

        scrambled = bytearray(source)
        scrambled[:256] = rng.integers(0, 256, 256, dtype=np.uint8).tobytes()
        path = root / f"scrambled_{number:02d}{suffix}"
        path.write_bytes(bytes(scrambled))
        add(path)

        path = root / f"empty_{number:02d}.mp4"
        path.write_bytes(b"")
        add(path)
        path = root / f"empty_folder_{number:02d}"
        path.mkdir()
        add(path)

        for extension in (".mp4", ".avi", ".gif"):
            path = root / f"random_{extension[1:]}_{number:02d}{extension}"
            path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
            add(path)

        path = root / f"png_named_mp4_{number:02d}.mp4"
        path.write_bytes(cv2.imencode(".png", face_like_frames(1)[0])[1].tobytes())
        add(path)
        path = root / f"text_named_avi_{number:02d}.avi"
        path.write_text("not a video\n" * 20)
        add(path)
        path = root / f"notes_{number:02d}.txt"
        path.write_text("left over\n")
        add(path)

        path = root / f"one_frame_{number:02d}.mp4"
        write_mp4(path, face_like_frames(1, seed=number))
        add(path)
        path = root / f"one_frame_folder_{number:02d}"
        write_frames(path, face_like_frames(1, seed=number))
        add(path)

        frames = face_like_frames(6, seed=number)
        path = root / f"truncated_frame_folder_{number:02d}"
        files = write_frames(path, frames)
        data = files[3].read_bytes()
        files[3].write_bytes(data[: len(data) // 2])  # no end marker: OpenCV refuses it
        add(path)
        path = root / f"premature_end_jpeg_folder_{number:02d}"
        files = write_frames(path, frames)
        premature_end_jpeg(files[4])
        add(path)
        path = root / f"random_frame_folder_{number:02d}"
        files = write_frames(path, frames, ".png")
        files[2].write_bytes(rng.integers(0, 256, 512, dtype=np.uint8).tobytes())
        add(path)

    path = root / "huge_png_frames"
    files = write_frames(path, face_like_frames(4), ".png")
    oversized_png(files[2])
    add(path)
    path = root / "huge_jpeg_frames"
    files = write_frames(path, face_like_frames(4))
    oversized_jpeg(files[0])
    add(path)
    return {"good": good, "bad": bad, "either": either}
