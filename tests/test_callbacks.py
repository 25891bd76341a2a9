"""Training callbacks in isolation: the in-graph NaN record and logs handed over unconverted."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from affinegan_tf.callbacks import DeferredLogsCallbackList
from affinegan_tf.nonfinite import NonFiniteStep, NonFiniteWatch


def test_the_first_non_finite_step_and_its_terms_are_recorded_in_graph():
    watch = NonFiniteWatch(["g_total", "d_global", "d_local"])

    @tf.function
    def record(step, g_total, d_global):
        watch.update_state(step, {"g_total": g_total, "d_global": d_global})

    assert watch.first_bad() is None
    for step, g_total, d_global in [(1, 1.0, 1.0), (2, 1.0, 1.0), (3, 1.0, np.nan)]:
        record(tf.constant(step, tf.int64), tf.constant(g_total), tf.constant(d_global))
    assert watch.first_bad() == NonFiniteStep(3, ("d_global",))
    # Later bad steps do not overwrite the first one.
    record(tf.constant(4, tf.int64), tf.constant(np.inf), tf.constant(np.nan))
    assert watch.first_bad() == NonFiniteStep(3, ("d_global",))
    watch.reset_state()
    assert watch.first_bad() is None


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(logs["loss"])


def test_logs_reach_the_callbacks_as_tensors_not_floats():
    logs = {"loss": tf.constant(0.5)}
    deferred, plain = Recorder(), Recorder()
    DeferredLogsCallbackList([deferred]).on_train_batch_end(0, logs)
    keras.callbacks.CallbackList([plain]).on_train_batch_end(0, logs)
    assert isinstance(deferred.seen[0], tf.Tensor)  # read only when a callback needs it
    assert isinstance(plain.seen[0], float)  # Keras's list converts (a host sync) every step
