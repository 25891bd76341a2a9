"""A quiet TensorFlow start-up for the command line.

Importing TensorFlow 2.21 writes its C++ start-up lines straight to file descriptor 2, twice (once
per native library that sets up logging): the absl "before InitializeLog" notice, the oneDNN notice,
"Could not find cuda drivers", the CPU-instruction notice and, when devices are first listed on a
machine without a GPU, an `E0000 ... failed call to cuInit` line. TF_CPP_MIN_LOG_LEVEL does not
reach the lines written before absl's logging is initialised, so the only way to keep them off a
user's terminal is to catch fd 2 while TensorFlow starts and pass on every line that is not one of
these known notices. Anything else written meanwhile (a real error, a Python traceback) is
replayed unchanged, in order.

A user who sets TF_CPP_MIN_LOG_LEVEL, or runs with --verbose, sees everything TensorFlow writes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# Runtime INFO and WARNING lines stay hidden after start-up; errors still show.
QUIET_LOG_LEVEL = "2"

# Start-up notices that say nothing a user can act on. Each pattern matches one whole line.
_NOISE = tuple(
    re.compile(pattern)
    for pattern in (
        r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
        r"[IW]\d{4} .*\] oneDNN custom operations are on\..*",
        r"[IWE]\d{4} .*\] Could not find cuda drivers on your machine, GPU will not be used\.",
        r"[IWE]\d{4} .*\] failed call to cuInit: .*",
        r"[IW]\d{4} .*\] Cannot dlopen some GPU libraries\..*",
        r"[IW]\d{4} .*\] This TensorFlow binary is optimized to use available CPU instructions.*",
        r"To enable the following instructions: .* rebuild TensorFlow with the appropriate "
        r"compiler flags\.",
        r"[IW]\d{4} .*\] TF-TRT Warning: .*",
        r"[IW]\d{4} .*\] Unable to register cu(DNN|FFT|BLAS) factory.*",
        r"[IW]\d{4} .*\] computation placer already registered.*",
    )
)


def is_start_up_noise(line: str) -> bool:
    """Whether one line of stderr is a known TensorFlow start-up notice."""
    text = line.rstrip("\r\n")
    return any(pattern.fullmatch(text) for pattern in _NOISE)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Catches fd 2 (C and Python writers alike) and replays all but start-up noise on exit.

    The catch goes to a temporary file, not a pipe, so a writer can never block on a full pipe.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [
                line
                for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not is_start_up_noise(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _import_tensorflow() -> None:
    import tensorflow as tf

    # Listing devices initialises the platforms (the cuInit attempt) while stderr is caught.
    tf.config.list_physical_devices()
    # Grappler's remapper fails on every graph of this model, training and exported alike
    # ("fanout ... exist for missing node .../BiasAdd": a conv's BiasAdd feeds both the fused
    # activation and the affine combine or the skip), logs an E0000 line each time a function is
    # first run, and leaves the graph unchanged. Switching it off loses nothing (measured in
    # compute_settings.py) and keeps `generate`'s output to its own lines.
    tf.config.optimizer.set_experimental_options({"remapping": False})


def start_tensorflow(verbose: bool = False, importer: Callable[[], None] = _import_tensorflow):
    """Imports TensorFlow with its start-up notices filtered, unless the user asked for them.

    Args:
        verbose: Show everything TensorFlow prints (--verbose).
        importer: What to run while stderr is caught (tests pass their own).
    """
    if verbose or LOG_LEVEL_VARIABLE in os.environ:
        importer()
        return
    os.environ[LOG_LEVEL_VARIABLE] = QUIET_LOG_LEVEL
    with filtered_stderr():
        importer()
