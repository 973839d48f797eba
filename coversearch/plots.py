"""Matplotlib, headless (Agg), for every PNG the product writes."""

from __future__ import annotations

import io
from pathlib import Path

# Genre colours (matplotlib's tab10), shared by the report's map and the page's map.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def pyplot():
    """pyplot on the Agg backend: no display is needed or used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """Lay out the figure, free it, and return it as PNG bytes (PNG whatever a file name would say)."""
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def save_figure(fig, path: Path, option: str | None = None) -> Path:
    """Write the figure as a PNG at exactly ``path``, atomically (``option``: a file the user named,
    see ``fsutil.write_atomic``), and free it."""
    from coversearch.fsutil import write_atomic

    write_atomic(path, figure_png(fig), option=option)
    return Path(path)


def plot_png(draw) -> bytes:
    """A small figure drawn by ``draw(ax)``, as PNG bytes (for pages that embed their images)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
