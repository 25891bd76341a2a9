"""NaN / Inf losses, caught inside the train step so that no one has to read the losses every step.

Converting every loss to a Python float on the host after every step costs a device-to-host copy
per term and, with asynchronous callbacks, a wait. Instead the train step records, in graph, the
first step at which any term was not finite and which terms; the training callbacks read that
small record when they check or save (`first_bad`), and read the losses only when they print or
log them.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops


@dataclass(frozen=True)
class NonFiniteStep:
    """The first training step with a NaN or Inf term, and the terms that were."""

    step: int
    terms: tuple[str, ...]


class NonFiniteWatch(keras.metrics.Metric):
    """Remembers the first step at which a term of the train step's logs was NaN or Inf.

    Not one of the model's `metrics`, so `reset_metrics()` (done at every scalar log) keeps it;
    metric variables are not checkpointed, so checkpoints are the same as without it.

    Args:
        term_names: Every name the train step may log, in the order they are reported.
    """

    def __init__(self, term_names, name: str = "nonfinite_watch"):
        super().__init__(name=name)
        self.term_names = tuple(term_names)
        self.first_step = self.add_variable(
            shape=(),
            initializer=keras.initializers.Constant(-1),
            dtype="int64",
            aggregation="only_first_replica",
            name="first_step",
        )
        self.bad_terms = self.add_variable(
            shape=(len(self.term_names),),
            initializer="zeros",
            dtype="float32",
            aggregation="only_first_replica",
            name="bad_terms",
        )

    def update_state(self, step, logs: dict) -> None:
        """Records `step` and its non-finite terms if this is the first bad step (in graph).

        Args:
            step: The number of the step just done (1-based).
            logs: This step's values by name (a subset of `term_names`).
        """
        finite = ops.stack(
            [
                ops.all(ops.isfinite(logs[name])) if name in logs else ops.convert_to_tensor(True)
                for name in self.term_names
            ]
        )
        is_first = ops.logical_and(self.first_step < 0, ops.logical_not(ops.all(finite)))
        self.first_step.assign(ops.where(is_first, ops.cast(step, "int64"), self.first_step))
        self.bad_terms.assign(
            ops.where(is_first, 1.0 - ops.cast(finite, "float32"), self.bad_terms)
        )

    def result(self):
        return self.first_step

    def reset_state(self) -> None:
        self.first_step.assign(-1)
        self.bad_terms.assign(ops.zeros_like(self.bad_terms))

    def first_bad(self) -> NonFiniteStep | None:
        """The first bad step so far, or None (reads two small variables: one host sync)."""
        step = int(ops.convert_to_numpy(self.first_step))
        if step < 0:
            return None
        flags = ops.convert_to_numpy(self.bad_terms)
        return NonFiniteStep(
            step, tuple(name for name, bad in zip(self.term_names, flags, strict=True) if bad)
        )
