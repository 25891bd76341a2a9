"""AffineGAN-TF: facial image-to-video translation by a hidden affine transformation (Keras 3)."""

__version__ = "0.1.0"
