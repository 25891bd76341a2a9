"""torch is an optional extra: only the importer uses it, and says how to get it when missing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from affinegan_tf.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1] / "affinegan_tf"


def test_only_the_importer_imports_torch():
    importing = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if re.search(r"^\s*(import torch|from torch)", path.read_text(), re.MULTILINE)
    ]
    assert importing == ["pytorch_import.py"]


def test_without_torch_the_command_names_the_extra(tmp_path, monkeypatch):
    from affinegan_tf.pytorch_import import import_pytorch

    source = tmp_path / "latest_net_G.pth"
    source.write_bytes(b"\x80\x02")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(UserError, match=r"affinegan-tf\[pytorch\]"):
        import_pytorch(source, tmp_path / "run")
    assert not (tmp_path / "run").exists()
