"""What the driver sends the training task (``TrainPlan``) and what the task names its model.

Its own module so that the task (``task``) and the Keras training it runs (``fit``) both
depend on it, not on each other.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Name of the trained model in the output folder.
MODEL_FILE = "model.keras"


@dataclass(frozen=True)
class TrainPlan:
    """Everything the training needs besides the data: what the driver sends to the task."""

    arch: str
    image_size: int
    weights: str
    epochs: int
    unfreeze_epochs: int
    batch_size: int
    learning_rate: float
    unfreeze_learning_rate: float
    seed: int
    backend: str
    score_subsets: tuple[str, ...]
    #: ``runtime.precision``; ``auto`` is decided in the task, on the device it trains on.
    precision: str = "float32"
    #: Write the kept model to the output (a cross-validation fold's model is only scored).
    save_model: bool = True
    #: The recipe beyond the report's (``--augment``, ``--schedule``, ``--label-smoothing``).
    augment: str = "report"
    schedule: str = "plateau"
    label_smoothing: float = 0.0
