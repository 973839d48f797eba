"""Matplotlib, headless (Agg), for every PNG the product writes."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """pyplot on the Agg backend: no display is needed or used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out, write the PNG (creating its folder) and free the figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    pyplot().close(fig)
    return path
