"""The training process's TensorFlow and allocator settings."""

from __future__ import annotations

import platform

import tensorflow as tf

from affinegan_tf.compute_settings import apply_compute_settings, keep_freed_memory


def test_settings_switch_the_remapper_off_and_keep_freed_memory_on_glibc():
    apply_compute_settings()
    assert tf.config.optimizer.get_experimental_options()["remapping"] is False
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is on_glibc
    # Allocation still works after the change (large blocks now come from the heap).
    assert float(tf.reduce_sum(tf.ones((64, 1024, 1024)))) == 64 * 1024 * 1024
