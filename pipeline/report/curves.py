"""Training curves: accuracy and loss per epoch, train against validation, as the report drew.

Drawn from the per-epoch history records (``history.json``), with the epoch whose weights
were kept and, for inceptionv3, the epoch the base was unfrozen marked, so a reader sees
which model the metrics belong to.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(epochs: list[dict], best_epoch: int, path: Path) -> None:
    """Two panels (accuracy, loss) of ``epochs`` records into a PNG at ``path``."""
    x = [e["epoch"] for e in epochs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.plot(x, [e[metric] for e in epochs], "o-", label="train")
        ax.plot(x, [e[f"val_{metric}"] for e in epochs], "o-", label="validation")
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
        phases = [e["phase"] for e in epochs]
        for i in range(1, len(phases)):
            if phases[i] != phases[i - 1]:
                ax.axvline(x[i] - 0.5, color="tab:red", linewidth=0.8, label=phases[i])
        ax.set_title(f"Model {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_xticks(x)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
