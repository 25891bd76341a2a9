"""The names of the built-in toy data: its expressions, video kinds and file formats.

Kept free of heavy imports so that the CLI can offer the choices without loading the drawing
code.
"""

from affinegan_tf.errors import UserError

EXPRESSIONS = ("smile", "surprise", "close_eyes", "puff_cheeks")
KINDS = ("complete", "incomplete", "periodic", "shuffled")
VIDEO_FORMATS = ("frames", "mp4")


def check_expression(expression: str) -> None:
    """Raises a UserError listing the choices unless `expression` is one of EXPRESSIONS."""
    if expression not in EXPRESSIONS:
        raise UserError(
            f"Unknown expression {expression!r}: choose one of {', '.join(EXPRESSIONS)}."
        )
