"""The loss curve of a training run as a matplotlib figure, and figures as file bytes.

Contract: matplotlib is imported only when a figure is made (never by ``import exprgrad``, the
compiler or generated modules), through its object API (``Figure``: no pyplot state, no display).
Without it, :func:`figure_class` raises a clear :class:`ExprgradValueError` naming the extra to
install. :func:`loss_figure` draws labelled axes, tick numbers, a title with the number of steps
and the last step's loss, and a log scale when the finite losses are positive and span more than
two decades. :func:`figure_bytes` renders PNG, SVG or PDF carrying exprgrad's ``mark`` (PNG
metadata, an SVG comment, a PDF trailer comment: see :mod:`exprgrad.run.files`). Used by the
``--plot`` option, ``exprgrad plot`` and ``TrainResult``'s Jupyter display.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from ..errors import ExprgradValueError


def figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ExprgradValueError(
            "drawing a plot needs matplotlib, which is not installed",
            hint="install it with: pip install 'exprgrad[plot]' (or pip install matplotlib)"
        ) from None
    return Figure


def loss_figure(losses: Sequence[float], title: str = "training loss", log: bool = True) -> Any:
    """A matplotlib Figure of a loss curve (see the module docstring)."""
    figure_class_ = figure_class()
    fig = figure_class_(figsize=(7, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    steps = list(range(1, len(losses) + 1))
    finite = [x for x in losses if math.isfinite(x)]
    ax.plot(steps, losses, color="#1f5fa8", linewidth=1.6, label="loss")
    if log and finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    ax.set_xlabel("step")
    ax.set_ylabel("loss (log scale)" if ax.get_yscale() == "log" else "loss")
    last = f"loss at the last step {losses[-1]:.4g}" if losses else "no step was taken"
    ax.set_title(f"{title}: {len(losses)} step{'s' if len(losses) != 1 else ''}, {last}")
    ax.grid(True, which="both", alpha=0.3)
    if losses:
        ax.annotate(f"{losses[-1]:.4g}", (steps[-1], losses[-1]), textcoords="offset points",
                    xytext=(-10, 8), ha="right", fontsize=9)
    return fig


def figure_bytes(fig: Any, fmt: str, mark: str) -> bytes:
    """A figure as ``png``, ``svg`` or ``pdf`` bytes carrying ``mark``."""
    buffer = io.BytesIO()
    metadata = {"png": {"Software": mark}, "svg": {"Creator": mark},
                "pdf": {"Creator": mark}}[fmt]
    fig.savefig(buffer, format=fmt, metadata=metadata)
    data = buffer.getvalue()
    if fmt == "svg":
        first, _, rest = data.decode("utf-8").partition("\n")
        data = (first + f"\n<!-- {mark} -->\n" + rest).encode("utf-8")
    elif fmt == "pdf":
        data = data.rstrip(b"\n") + f"\n%{mark}\n".encode()
    return data
