"""The one exception type for problems the user can fix (bad input, bad flags, bad files)."""


class UserError(Exception):
    """A problem with the user's input: the message names the file and says what to do.

    The CLI prints the message without a traceback and exits with status 2.
    """


class DataWarning(UserWarning):
    """Some entries of a data set were skipped; the message lists each with its reason.

    The CLI prints the message alone (`warning: ...`), without Python's file and source line.
    """


# Optional packages per feature, and the extra that installs them.
EXTRA_MODULES = {
    "tflite": (("ai_edge_litert",), "export"),
    "onnx": (("tf2onnx", "onnx", "onnxruntime"), "export"),
    "eval": (("dlib", "face_recognition_models", "scipy"), "eval"),
}


def missing_modules(feature: str) -> list[str]:
    """The optional packages of a feature (a key of EXTRA_MODULES) that are not installed."""
    import importlib.util

    return [name for name in EXTRA_MODULES[feature][0] if importlib.util.find_spec(name) is None]


def require_extra(feature: str, purpose: str) -> None:
    """Raises a UserError naming the pip command when a feature's optional packages are missing."""
    extra = EXTRA_MODULES[feature][1]
    missing = missing_modules(feature)
    if missing:
        raise UserError(
            f"{purpose} needs {', '.join(missing)}, which is not installed. Install it with: "
            f"pip install 'affinegan-tf[{extra}]'"
        )
