"""Running the installed `affinegan-tf` console script as a user does, from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def console_script() -> str:
    """The installed `affinegan-tf` beside this Python (the virtualenv's bin folder)."""
    script = Path(sys.executable).parent / "affinegan-tf"
    found = str(script) if script.is_file() else shutil.which("affinegan-tf")
    assert found, "the console script affinegan-tf is not installed (pip install .)"
    return found


def run_cli(
    *arguments: str, cwd: Path, timeout: int = 900, check: bool = True
) -> subprocess.CompletedProcess:
    """Runs `affinegan-tf ARGUMENTS` in `cwd` (not the checkout, so the installed package and
    its packaged files are what runs) and, unless `check` is False, asserts it succeeded."""
    result = subprocess.run(
        [console_script(), *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=timeout,
    )
    command = f"affinegan-tf {' '.join(arguments)}"
    assert not check or result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    return result
