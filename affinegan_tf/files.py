"""Putting finished outputs in place so that nobody ever sees half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def replace_folder(finished: Path, target: Path) -> None:
    """Moves a finished folder to `target`, replacing what is there: `target` is the old
    folder or the new one, never a mix (the old one is restored if the move fails).

    `finished` must be on the same file system as `target` (build it beside `target`).
    """
    if not target.exists():
        os.replace(finished, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, retired / target.name)
    try:
        os.replace(finished, target)
    except BaseException:
        os.replace(retired / target.name, target)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Writes a small text file under a temporary name, then renames it over `path`."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
