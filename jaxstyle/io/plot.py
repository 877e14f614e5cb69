"""A loss-curve figure of a run (matplotlib, an optional extra: ``pip install 'jaxstyle[plot]'``)."""

from __future__ import annotations

import os

import numpy as np

from jaxstyle.io import storage

TERMS = ("content", "style", "tv")


def require_matplotlib() -> None:
    """Raise a one-line ValueError if matplotlib is missing (call before a long run)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'jaxstyle[plot]'") from None


def plot_losses(path: str | os.PathLike | storage.Url, loss_history: np.ndarray, term_history: tuple[dict, ...],
                title: str = "") -> None:
    """Write a PNG: the total loss at every step, and the weighted content, style and TV terms
    at every recorded step, on a log scale."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    losses = np.asarray(loss_history, np.float64)
    ax.plot(np.arange(len(losses)), losses, color="black", lw=1.2, label="total (before each step)")
    steps = [t["step"] for t in term_history]
    for name, style in zip(TERMS, ("o-", "s-", "^-")):
        values = np.array([t[name] for t in term_history], np.float64)
        if len(values) and np.any(values > 0):
            ax.plot(steps, values, style, ms=3, lw=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    storage.atomic_write(storage.location(path), lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
