"""Keeping the C decoders' own console lines off the user's terminal.

libjpeg (inside OpenCV) writes warnings such as `Corrupt JPEG data: premature end of data
segment` straight to file descriptor 2, out of reach of Python's `sys.stderr`. Decoding runs with
descriptor 2 pointed at a temporary file; the readers turn what was captured into their own
message (a corrupt JPEG becomes a skip reason or an error naming the file) or drop it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

# Descriptor 2 is process-wide: one redirection at a time (nested use by the same thread is fine).
_LOCK = threading.RLock()


class CapturedOutput:
    """What the C libraries wrote to descriptor 2 inside `captured_native_stderr`."""

    def __init__(self) -> None:
        self.text = ""


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[CapturedOutput]:
    """Redirects descriptor 2 into a temporary file for the duration of the block.

    While it is active, anything any thread writes to descriptor 2 is captured rather than
    shown, so keep the block to the decoding call itself.

    Yields:
        A `CapturedOutput` whose `text` holds the captured output once the block has ended.
    """
    captured = CapturedOutput()
    with _LOCK:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 at all (a daemon): nothing to keep quiet
            yield captured
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                captured.text = sink.read().decode("utf-8", errors="replace")
