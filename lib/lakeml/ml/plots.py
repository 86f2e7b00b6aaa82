"""PNG plots for MLflow runs and reports (matplotlib, headless)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lakeml.ml.metrics import Curves  # noqa: E402


def training_plots(c: Curves, importances: list[tuple[str, float]], out_dir: str | None = None, top: int = 20) -> str:
    """Write roc.png, pr.png and feature_importance.png; returns the folder."""
    out = Path(out_dir or tempfile.mkdtemp(prefix="lakeml-plots-"))
    out.mkdir(parents=True, exist_ok=True)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(c.fpr, c.tpr, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test snapshot)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(c.recall, c.precision)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test snapshot)", ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(out / "pr.png", dpi=100)
    plt.close(fig)

    imp = importances[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(imp) + 1)))
    ax.barh([n for n, _ in imp], [v for _, v in imp])
    ax.set(xlabel="importance", title="Feature importance")
    fig.tight_layout()
    fig.savefig(out / "feature_importance.png", dpi=100)
    plt.close(fig)
    return str(out)
