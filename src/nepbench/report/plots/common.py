"""What the report's figure modules share: matplotlib on Agg (no pyplot state), the reading of
series values into arrays (`array`, `pair`), PNG bytes (`png`), colours and panel grids.

Series reach the figures as result records store them (JSON: lists, not arrays). `pair` raises
ValueError for paired values of different lengths, so the report can say which figure it could
not draw; a value that is missing or empty gives None, and the figure leaves it out.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 110


def array(values: Any) -> np.ndarray | None:
    """A finite-able 1-D float array, or None when `values` is missing, empty or not numeric."""
    if values is None:
        return None
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return arr if arr.size else None


def pair(values_a: Any, values_b: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Two arrays of equal length with at least one finite pair, or None when either is missing or no
    pair is finite; ValueError when both are there with different lengths (a malformed series)."""
    a, b = array(values_a), array(values_b)
    if a is None or b is None:
        return None
    if a.size != b.size:
        raise ValueError(f"paired series of different lengths ({a.size} and {b.size})")
    keep = np.isfinite(a) & np.isfinite(b)
    return (a[keep], b[keep]) if keep.any() else None


def tables(block: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The entries of a series block keyed by element or run that are tables: {} for a block an
    older record lacks, and an entry a hand-edited record broke costs its own panel, not the figure."""
    return {key: value for key, value in (block or {}).items() if isinstance(value, Mapping)}


def png(fig: Figure) -> bytes:
    """Render `fig` to PNG bytes (no software tag, so equal data give equal bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def colours(n: int) -> list[str]:
    """n distinguishable colours (tab10)."""
    return [matplotlib.colormaps["tab10"](i % 10) for i in range(n)]


def grid(fig: Figure, n_panels: int, columns: int = 3) -> list[Any]:
    """`n_panels` axes on a grid of up to `columns` columns, the figure sized to fit them."""
    cols = min(columns, n_panels)
    rows = -(-n_panels // cols)
    fig.set_size_inches(4.0 * cols, 3.0 * rows)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]


def bound_lines(ax: Any, bounds: Sequence[tuple[float, str]]) -> None:
    """Each (value, label) of `bounds` as a red dashed horizontal line."""
    for value, label in bounds:
        ax.axhline(float(value), color="red", lw=0.9, ls="--", label=label)


def log_limits(set_limits: Callable[[float, float], Any], values: np.ndarray) -> None:
    """Log-axis limits a factor 3 beyond the positive `values`, so one point or a narrow range still
    shows a decade or more."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size:
        set_limits(float(positive.min()) / 3, float(positive.max()) * 3)
