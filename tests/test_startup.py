"""The quiet TensorFlow start-up: our lines only, real errors kept, everything with --verbose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cli_helpers import console_script
from conftest import REPO_ROOT

from affinegan_tf import startup

START_UP_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795783243.377605    4646 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1795783243.379231    4646 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.\n"
    "E0000 00:00:1795783250.100000    4646 cuda_executor.cc:1309] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)


@pytest.mark.parametrize("line", START_UP_LINES.splitlines())
def test_known_start_up_lines_are_noise(line):
    assert startup.is_start_up_noise(line)


@pytest.mark.parametrize(
    "line",
    [
        "E0000 00:00:1795783250.1 4646 op_kernel.cc:1] OOM when allocating tensor",
        "Traceback (most recent call last):",
        "error: Data folder x does not exist.",
        "W0000 00:00:1.0 1 some.cc:1] Could not find cuda drivers on your machine, GPU will not be "
        "used. And something else",
    ],
)
def test_other_lines_are_not_noise(line):
    assert not startup.is_start_up_noise(line)


def _write_to_fd2(text: str):
    def importer():
        os.write(2, text.encode())

    return importer


def test_filtered_start_keeps_real_errors_in_order(capfd, monkeypatch):
    monkeypatch.delenv(startup.LOG_LEVEL_VARIABLE, raising=False)
    real = "E0000 00:00:1.0 1 kernel.cc:1] a real failure\nTraceback line\n"
    startup.start_tensorflow(importer=_write_to_fd2(START_UP_LINES + real))
    assert capfd.readouterr().err == real
    assert os.environ[startup.LOG_LEVEL_VARIABLE] == startup.QUIET_LOG_LEVEL


@pytest.mark.parametrize("how", ["verbose", "environment"])
def test_user_who_asks_sees_everything(capfd, monkeypatch, how):
    monkeypatch.delenv(startup.LOG_LEVEL_VARIABLE, raising=False)
    if how == "environment":
        monkeypatch.setenv(startup.LOG_LEVEL_VARIABLE, "0")
    startup.start_tensorflow(verbose=how == "verbose", importer=_write_to_fd2(START_UP_LINES))
    assert capfd.readouterr().err == START_UP_LINES


def _run(arguments, environment_update, tmp_path):
    environment = {
        key: value for key, value in os.environ.items() if key != startup.LOG_LEVEL_VARIABLE
    }
    environment.update(environment_update)
    return subprocess.run(
        [console_script(), *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=300,
    )


def test_a_tensorflow_command_prints_only_our_lines(tmp_path):
    result = _run(
        ["intensity", "--model", str(tmp_path / "missing"), "--video", "x.mp4"], {}, tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_verbose_shows_tensorflow_lines(tmp_path):
    result = _run(
        ["intensity", "--model", str(tmp_path / "missing"), "--video", "x.mp4", "--verbose"],
        {},
        tmp_path,
    )
    assert result.returncode == 2
    assert "oneDNN" in result.stderr or "cuda" in result.stderr.lower(), result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_the_module_never_imports_tensorflow_itself():
    code = "import sys, affinegan_tf.cli; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr


def test_generate_prints_only_its_output_path(shared_data, tmp_path):
    """A whole normal run, TensorFlow's runtime included: the GIF's path on stdout, nothing on
    stderr (the remapper's E0000 line on this model's graphs used to appear here)."""
    out = tmp_path / "smile.gif"
    result = _run(
        [
            "generate",
            "--model",
            str(REPO_ROOT / "exported" / "smile-frl-128"),
            "--image",
            str(shared_data / "lisa4.jpg"),
            "--out",
            str(out),
        ],
        {},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out) and out.is_file()
    assert result.stderr == ""
