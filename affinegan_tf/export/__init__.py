"""Exporting `generate(image, intensities)` as SavedModel, TFLite and ONNX."""
