"""The throughput task's figures: CP2K against NEP on identical cells and the cost against size (one
record), and the speed-up against N (models overlaid). Series: `tasks.throughput.ThroughputSeries`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.figure import Figure

from .common import array, bound_lines, colours, log_limits, pair, png

if TYPE_CHECKING:
    from ...tasks.throughput import PowerLawFit, ThroughputSeries


def throughput_bars_png(series: ThroughputSeries, title: str = "") -> bytes | None:
    """Seconds per MD step, CP2K vs NEP on identical cells (log axis), speed ratio on top."""
    rows = [r for r in series.get("identical_n") or []
            if pair([r.get("cp2k_s_per_step")], [r.get("nep_s_per_step")]) is not None]
    if not rows:
        return None
    fig = Figure(figsize=(max(4.5, 1.6 * len(rows) + 2), 3.8))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    cp2k = np.array([float(r["cp2k_s_per_step"]) for r in rows])
    nep = np.array([float(r["nep_s_per_step"]) for r in rows])
    ax.bar(x - 0.2, cp2k, 0.4, label="CP2K (DFT)", color="#4c72b0")
    ax.bar(x + 0.2, nep, 0.4, label=f"NEP ({rows[0].get('nep_engine', 'nep')})", color="#dd8452")
    ax.set_yscale("log")
    for xi, c, n, row in zip(x, cp2k, nep, rows):
        if c > 0 and n > 0 and row.get("ratio") is not None:  # a ratio withheld (busy machine) is not drawn
            ax.annotate(f"{c / n:,.0f}×", (xi, c), ha="center", va="bottom", fontsize=8)
    positive = np.concatenate([cp2k[cp2k > 0], nep[nep > 0]])
    if positive.size:
        ax.set_ylim(positive.min() / 3, positive.max() * 100)  # headroom for the ratios and legend
    ax.set_xticks(x, [f"{int(r.get('n_atoms', 0))} atoms" for r in rows])
    ax.set_ylabel("wall time per MD step (s)")
    ax.set_title(f"identical cells, identical protocol {title}".strip(), fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    return png(fig)


def _speedup_fit(fits: Mapping[str, PowerLawFit] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(N, fitted CP2K s/step ÷ fitted NEP s/step) over the sizes both fits span, or None when the
    series holds no pair of power-law fits (`fits.cp2k` and `fits.nep_cpu`: exponent, prefactor_s, n_atoms)."""
    cp2k, nep = (fits or {}).get("cp2k"), (fits or {}).get("nep_cpu")
    if cp2k is None or nep is None:
        return None
    terms = [f.get(k) for f in (cp2k, nep) for k in ("exponent", "prefactor_s")]
    sizes = [array(f.get("n_atoms")) for f in (cp2k, nep)]
    if any(t is None or not math.isfinite(t) for t in terms) or any(n is None for n in sizes):
        return None
    b_cp2k, a_cp2k, b_nep, a_nep = terms
    if a_cp2k <= 0 or a_nep <= 0:
        return None
    every = np.concatenate(sizes)
    n = np.geomspace(max(1.0, float(every.min())), float(every.max()), 50)
    return n, (a_cp2k * n ** b_cp2k) / (a_nep * n ** b_nep)


def speedup_vs_n_overlay_png(series_by_model: Mapping[str, ThroughputSeries],
                             bounds: Sequence[tuple[float, str]] = ()) -> bytes | None:
    """Speed-up over CP2K vs number of atoms on log-log axes, per model: the ratios measured on
    identical cells (circles CPU NEP, squares GPU NEP), the ratio of the two power-law fits where
    the series holds them (dashed), and each of `bounds` (the claim, e.g. the 70,000× of the study)
    as a red dashed line. A ratio the task withheld (CP2K timed on a busy machine) is not drawn.

    Series: `ThroughputSeries.identical_n` and `.fits`.
    """
    drawn: list[tuple[str, str, np.ndarray, np.ndarray, str]] = []
    for label, series in series_by_model.items():
        rows = series.get("identical_n") or []
        for key, marker, kind in (("ratio", "o", "CPU"), ("ratio_gpu", "s", "GPU")):
            points = [(r.get("n_atoms"), r.get(key)) for r in rows]  # a ratio withheld is absent
            points = [(n, v) for n, v in points if n and v and n > 0 and v > 0 and math.isfinite(n * v)]
            if points:
                n, v = np.array(points, dtype=float).T
                drawn.append((label, marker, n, v, kind))
        fit = _speedup_fit(series.get("fits"))
        if fit is not None:
            drawn.append((label, "--", fit[0], fit[1], "fit"))
    if not drawn:
        return None
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    colour_of = dict(zip(series_by_model, colours(len(series_by_model))))
    for label, marker, n, v, kind in drawn:
        if kind == "fit":
            ax.plot(n, v, "--", color=colour_of[label], lw=1.0, label=f"{label}: ratio of power-law fits")
        else:
            ax.plot(n, v, marker, color=colour_of[label], ms=7, ls="-" if n.size > 1 else "",
                    label=f"{label}: {kind} NEP, identical cells")
    bound_lines(ax, bounds)
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_limits(ax.set_xlim, np.concatenate([n for _, _, n, _, _ in drawn]))
    log_limits(ax.set_ylim, np.concatenate([v for _, _, _, v, _ in drawn] + [np.array([b for b, _ in bounds])]))
    ax.set_xlabel("atoms (N)")
    ax.set_ylabel("speed-up over CP2K (×)")
    ax.set_title("speed-up vs system size", fontsize=10)
    ax.legend(fontsize=7)
    return png(fig)


def scaling_png(series: ThroughputSeries, title: str = "") -> bytes | None:
    """Seconds per atom-step vs number of atoms, log-log, one line per engine (`ThroughputSeries.scaling`)."""
    lines = [(engine, p) for engine, data in (series.get("scaling") or {}).items()
             if (p := pair(data.get("n_atoms"), data.get("s_per_atom_step"))) is not None]
    lines = [(e, (n[(n > 0) & (s > 0)], s[(n > 0) & (s > 0)])) for e, (n, s) in lines]
    lines = [(e, p) for e, p in lines if p[0].size]
    if not lines:
        return None
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for (engine, (n, s)), colour in zip(lines, colours(len(lines))):
        order = np.argsort(n)
        ax.plot(n[order], s[order], "o-", color=colour, label=engine)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms")
    ax.set_ylabel("wall time per atom-step (s)")
    ax.set_title(f"cost scaling {title}".strip(), fontsize=10)
    ax.legend(fontsize=8)
    return png(fig)
