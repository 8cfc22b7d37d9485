"""The expansion task's figures: volume expansion against carbon-shell thickness (models overlaid)
and radial Li-fraction and strain profiles (one record). Series: written by tasks/expansion/."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence

from matplotlib.figure import Figure

from .common import array, bound_lines, colours, pair, png, tables


def expansion_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]],
                          limit_percent: float | None = None,
                          bounds: Sequence[tuple[float, str]] = ()) -> bytes | None:
    """Particle (and core) volume expansion vs carbon-shell thickness, with error bars, per model.

    `limit_percent` and each (percent, label) of `bounds` draw a horizontal line at a claimed bound
    (bounds belong to the suite's criteria, so none is drawn unless the caller passes one).
    """
    usable = {label: s for label, s in series_by_model.items()
              if pair(s.get("shell_thickness_nm"), s.get("particle_dv_over_v0")) is not None}
    if not usable:
        return None
    fig = Figure(figsize=(5.4, 3.9))
    ax = fig.add_subplot(1, 1, 1)
    for (label, s), colour in zip(usable.items(), colours(len(usable))):
        t = array(s["shell_thickness_nm"])
        dv = 100.0 * array(s["particle_dv_over_v0"])
        err = array(s.get("particle_dv_stderr"))
        yerr = 100.0 * err if err is not None and err.size == t.size else None
        ax.errorbar(t, dv, yerr=yerr, fmt="o-", capsize=3, color=colour, label=f"{label}: particle")
        core = array(s.get("core_dv_over_v0"))
        if core is not None and core.size == t.size:
            ax.plot(t, 100.0 * core, "s:", color=colour, alpha=0.7, label=f"{label}: Si core")
    if limit_percent is not None:
        ax.axhline(limit_percent, color="red", lw=0.8, ls="--", label=f"{limit_percent:g} % claim")
    bound_lines(ax, bounds)
    ax.set_xlabel("carbon shell thickness (nm)")
    ax.set_ylabel("ΔV / V₀ (%)")
    ax.set_title("Si@C volume expansion on lithiation", fontsize=10)
    ax.legend(fontsize=7)
    return png(fig)


def radial_png(series: Mapping[str, Any], title: str = "") -> bytes | None:
    """Li fraction and strain vs radius, one line per shell thickness (nm)."""
    radial = sorted(tables(series.get("radial")).items(), key=lambda kv: _as_float(kv[0]))
    profiles = [(key, data) for key, data in radial if array(data.get("r_nm")) is not None]
    if not profiles:
        return None
    fig = Figure(figsize=(9.0, 3.6))
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    drew = False
    for (key, data), colour in zip(profiles, colours(len(profiles))):
        r = array(data["r_nm"])
        for ax, field in zip(axes, ("li_fraction", "strain")):
            y = array(data.get(field))
            if y is not None and y.size == r.size:
                ax.plot(r, y, color=colour, label=f"shell {key} nm")
                drew = True
    if not drew:
        return None
    axes[0].set_ylabel("Li fraction")
    axes[1].set_ylabel("volumetric strain")
    axes[0].set_xlabel("radius in the lithiated particle (nm)")
    axes[1].set_xlabel("radius in the Li-free control (nm)")  # strain is binned by each atom's start
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"radial profiles {title}".strip(), fontsize=10)
    return png(fig)


def _as_float(text: Any) -> float:
    """Sort key: float(text), or +inf when it is not a number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("inf")
