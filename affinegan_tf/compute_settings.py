"""TensorFlow and allocator settings every training process applies before it builds a model.

One definition for `fit`, `measure_steps_per_second` and benchmarks/train_speed.py, so that what
is measured is what trains. Each setting is kept only where it was measured to help (issue 11).
"""

from __future__ import annotations

import ctypes
import platform

import tensorflow as tf

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_KEEP_BYTES = 2**31 - 1


def keep_freed_memory() -> bool:
    """Makes glibc's malloc keep freed memory for reuse instead of handing it back to the system.

    By default every allocation above a (moving) threshold is a fresh mmap, and freed heap tops
    are trimmed, so a 256 `paper` step touched 74,000-151,000 fresh pages (0.3-0.6 GB, varying
    from process to process) and paid a page fault for each. One malloc arena, no mmap and no
    trimming: 3,900 faults per step and 0.93x the CPU time, for 0.12 GiB more peak memory
    (measured with the equivalent GLIBC_TUNABLES in separate processes). Process-wide; a no-op
    (False) off glibc.

    Returns:
        Whether the settings were applied.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP_BYTES))
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)


def apply_compute_settings() -> None:
    """Applies the training process's settings (call before building the model).

    - Grappler's remapper is switched off: on this graph it fails ("fanout LeakyReluGrad exists
      for missing node .../conv_0/BiasAdd": the PatchGAN's and the encoder's conv + bias +
      LeakyReLU fusion drops a node the gradient reads), logs an error and leaves the graph
      unchanged, so it gains nothing. Still so with the bias adds before instance norm removed
      (measured). The oneDNN layout pass fuses conv + bias without it (_MklNativeConv2DWithBias).
    - glibc malloc keeps freed memory (`keep_freed_memory`).
    - Thread pools and oneDNN stay at TensorFlow's defaults: with 2 cores, inter-op 1 used the
      same CPU time per `tiny` step (0.154 vs 0.161-0.162 s), intra-op 1 lost wall time (1.09 vs
      0.34 s) and TF_ENABLE_ONEDNN_OPTS=0 took 1.8x the CPU time.
    """
    tf.config.optimizer.set_experimental_options({"remapping": False})
    keep_freed_memory()
