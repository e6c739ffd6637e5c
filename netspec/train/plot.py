"""The learning curves of a run as a PNG a user can open: loss and accuracy per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netspec.files.outputs import atomic_path


def plot_curves(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    import matplotlib.pyplot as plt

    figure = curves_figure(records, title)
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return path


def curves_figure(records: list[dict[str, Any]], title: str = ""):
    """The loss and accuracy panels. Each legend sits below its panel: inside, it covered the
    top-5 line, which runs along the top once a run learns."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4.4), constrained_layout=True)
    loss_ax.plot(epochs, [r["train_loss"] for r in records], marker="o", label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in records], marker="o", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_ax.plot(epochs, [r["train_top1"] for r in records], marker="o", label="train top-1")
    acc_ax.plot(epochs, [r["val_top1"] for r in records], marker="o", label="validation top-1")
    acc_ax.plot(epochs, [r["val_top5"] for r in records], marker="o", linestyle="--", label="validation top-5")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
        if len(epochs) < 15:
            ax.set_xticks(epochs)
    if title:
        figure.suptitle(title)
    return figure
