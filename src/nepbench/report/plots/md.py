"""The md_accuracy task's figures, models overlaid: the AIMD references' thermostat history, g(r),
ADF, vDOS and MSD against the AIMD, and Li diffusivity against 1/T. Series: `tasks.md_accuracy.MdSeries`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from .common import array, colours, grid, pair, png

if TYPE_CHECKING:
    from ...tasks.md_accuracy import MdSeries

REF_STYLE = {"color": "black", "lw": 1.6, "label": "DFT (CP2K)"}


def _runs_of(series_by_model: Mapping[str, MdSeries], key: str) -> dict[str, Mapping[str, Any]]:
    """{model label: {AIMD run id: data}} from the md_accuracy series block `key` ("rdf", "msd", ...),
    for the models whose block holds a run (an older record may lack "adf" and "vdos")."""
    return {label: s[key] for label, s in series_by_model.items() if s.get(key)}


def aimd_thermo_png(series_by_model: Mapping[str, MdSeries]) -> bytes | None:
    """The AIMD reference runs themselves: temperature (black, target dotted) and potential energy per
    atom (blue, right axis) vs time, with the warm-up's end (dashed) and the detected start of a
    stationary potential energy (dash-dot). The same for every model, so drawn from the first that has it.

    Series: `MdSeries.aimd_thermo` (`tasks.md_accuracy.AimdThermo` per run).
    """
    runs = next(iter(_runs_of(series_by_model, "aimd_thermo").values()), None)
    panels = sorted(run for run, data in (runs or {}).items() if pair(data.get("time_ps"), data.get("temperature_k")))
    if not panels:
        return None
    fig = Figure()
    for ax, run in zip(grid(fig, len(panels)), panels):
        data = runs[run]
        t, temperature = pair(data["time_ps"], data["temperature_k"])
        ax.plot(t, temperature, color="black", lw=0.8, label="T")
        target = data.get("target_temperature_k")
        if target is not None:
            ax.axhline(target, color="black", lw=0.8, ls=":")
        for key, style, label in (("warmup_ps", "--", "warm-up end"), ("equilibrated_ps", "-.", "E_pot stationary")):
            if data.get(key) is not None:
                ax.axvline(data[key], color="grey", lw=1.0, ls=style, label=label)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("T (K)")
        ax.set_title(f"{run}: CP2K AIMD", fontsize=9)
        potential = pair(data["time_ps"], data.get("potential_ev_per_atom"))
        if potential is not None:
            right = ax.twinx()
            right.plot(potential[0], potential[1] * 1000, color="tab:blue", lw=0.8)
            right.set_ylabel("E_pot − E_pot(0) (meV/atom)", color="tab:blue")
        ax.legend(fontsize=7, loc="upper right")
    fig.set_size_inches(fig.get_size_inches() * [1.3, 1.0])  # room for the right-hand axes
    fig.tight_layout()
    return png(fig)


def _reference_and_models(ax: Any, curves: Sequence[tuple[str, Any, Any, Any]]) -> None:
    """One overlay panel from (model label, x, reference y, model y) per model, in model order: the
    reference in black, drawn once (from the first model that has it), each model dashed in its
    colour. A missing curve is left out; x and y of different lengths raise ValueError (`_pair`)."""
    drew_ref = False
    for (label, x, ref, model), colour in zip(curves, colours(len(curves))):
        ref_xy, model_xy = pair(x, ref), pair(x, model)
        if ref_xy is not None and not drew_ref:
            ax.plot(*ref_xy, **REF_STYLE)
            drew_ref = True
        if model_xy is not None:
            ax.plot(*model_xy, color=colour, lw=1.2, ls="--", label=label)


def _curves_overlay(series_by_model: Mapping[str, MdSeries], key: str, x_key: str, curves_key: str,
                    x_label: str, y_label: str) -> bytes | None:
    """One panel per (AIMD run, curve) of series block `key`, shaped {run: {x_key: [...], curves_key:
    {name: {"ref": [...], "model": [...]}}}}: the AIMD reference in black, each model dashed."""
    usable = _runs_of(series_by_model, key)
    panels = sorted({(run, name) for runs in usable.values() for run, data in runs.items()
                     for name in data.get(curves_key) or {}})
    if not panels:
        return None
    fig = Figure()
    for ax, (run, name) in zip(grid(fig, len(panels)), panels):
        curves = []
        for label, runs in usable.items():
            data = runs.get(run) or {}
            pair_curves = (data.get(curves_key) or {}).get(name) or {}
            curves.append((label, data.get(x_key), pair_curves.get("ref"), pair_curves.get("model")))
        _reference_and_models(ax, curves)
        ax.set_title(f"{run}: {name}", fontsize=9)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.legend(fontsize=7)
    return png(fig)


def rdf_overlay_png(series_by_model: Mapping[str, MdSeries]) -> bytes | None:
    """g(r) per AIMD run and species pair: the AIMD reference in black, each model in colour.

    Series: `MdSeries.rdf` (`tasks.md_accuracy.RdfRun` per run).
    """
    return _curves_overlay(series_by_model, "rdf", "r_a", "pairs", "r (Å)", "g(r)")


def adf_overlay_png(series_by_model: Mapping[str, MdSeries]) -> bytes | None:
    """Bond-angle distributions per AIMD run and triplet (centre atom in the middle, e.g. "Si-Si-Si").

    Series: `MdSeries.adf` (`tasks.md_adf_vdos.AdfRun` per run); None without an "adf" block.
    """
    return _curves_overlay(series_by_model, "adf", "theta_deg", "triplets", "angle (°)", "P(θ)")


def vdos_overlay_png(series_by_model: Mapping[str, MdSeries]) -> bytes | None:
    """Vibrational densities of states per AIMD run and species (velocity autocorrelation spectra).

    Series: `MdSeries.vdos` (`tasks.md_adf_vdos.VdosRun` per run); None without a "vdos" block.
    """
    return _curves_overlay(series_by_model, "vdos", "freq_thz", "species", "frequency (THz)", "VDOS (arb.)")


def recorded_fit_window(value: Any) -> tuple[float, float] | None:
    """A recorded MSD fit window (t_start, t_end) in ps, or None when absent or not two increasing numbers."""
    window = array(value)
    if window is None or window.size != 2 or not np.all(np.isfinite(window)) or window[1] <= window[0]:
        return None
    return float(window[0]), float(window[1])


def msd_overlay_png(series_by_model: Mapping[str, MdSeries]) -> bytes | None:
    """Mean squared displacement vs time per AIMD run and species: AIMD in black, models in colour,
    and the window D is fitted over shaded where the series records it.

    Series: `MdSeries.msd` (`tasks.md_accuracy.MsdCurve` per run and species).
    """
    usable = _runs_of(series_by_model, "msd")
    panels = sorted({(run, sp) for runs in usable.values() for run, data in runs.items() for sp in data})
    if not panels:
        return None
    fig = Figure()
    for ax, (run, sp) in zip(grid(fig, len(panels)), panels):
        curves, window = [], None
        for label, runs in usable.items():
            data = (runs.get(run) or {}).get(sp) or {}
            curves.append((label, data.get("time_ps"), data.get("ref"), data.get("model")))
            window = window or recorded_fit_window(data.get("fit_window_ps"))
        _reference_and_models(ax, curves)
        if window is not None:
            ax.axvspan(*window, color="grey", alpha=0.18, lw=0,
                       label=f"D fit window {1000 * window[0]:.0f}–{1000 * window[1]:.0f} fs")
        ax.set_title(f"{run}: {sp} MSD", fontsize=9)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("MSD (Å²)")
        ax.legend(fontsize=7)
    return png(fig)


def _rows(values: Any, rows: np.ndarray) -> np.ndarray | None:
    """The entries of a per-point series at the `rows` mask, or None when it is absent or of another length."""
    values = array(values)
    return values[rows] if values is not None and values.size == rows.size else None


def _errorbars(ax: Any, x: np.ndarray, y: Any, err: Any, **style: Any) -> bool:
    """Plot y(x) with optional error bars, dropping non-positive y (log axes); True if drawn."""
    y_arr = array(y)
    if y_arr is None or y_arr.size != x.size:
        return False
    e_arr = array(err)
    keep = np.isfinite(y_arr) & (y_arr > 0)
    if not keep.any():
        return False
    yerr = e_arr[keep] if e_arr is not None and e_arr.size == x.size else None
    ax.errorbar(x[keep], y_arr[keep], yerr=yerr, capsize=3, **style)
    return True


def arrhenius_overlay_png(series_by_model: Mapping[str, MdSeries]) -> bytes | None:
    """Li diffusivity vs 1000/T on a log axis: AIMD reference and each model, with standard errors
    (series: `MdSeries.arrhenius`, `tasks.md_diffusion.ArrheniusPoints`)."""
    usable = {label: s["arrhenius"] for label, s in series_by_model.items()
              if s.get("arrhenius") is not None and array(s["arrhenius"].get("temperature_k")) is not None}
    if not usable:
        return None
    fig = Figure(figsize=(5.0, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_yscale("log")
    drew_ref, drew_any = False, False
    for (label, data), colour in zip(usable.items(), colours(len(usable))):
        temps = array(data["temperature_k"])
        systems = data.get("system")  # older records lack it: one line across all points
        if systems is None or len(systems) != temps.size:
            systems = [""] * temps.size
        draw_ref, drew_ref_here = not drew_ref, False  # the AIMD points once, from the first model that has them
        for system in dict.fromkeys(systems):  # one line per composition, never one across them
            rows = np.array([s == system for s in systems])
            x = 1000.0 / temps[rows]
            suffix = f" {system}" if len(set(systems)) > 1 else ""
            if draw_ref:
                drew_ref_here |= _errorbars(ax, x, _rows(data.get("d_ref_cm2_per_s"), rows),
                                            _rows(data.get("d_ref_stderr"), rows),
                                            fmt="o-", color="black", label=f"AIMD (CP2K){suffix}")
            drew_any |= _errorbars(ax, x, _rows(data.get("d_model_cm2_per_s"), rows),
                                   _rows(data.get("d_model_stderr"), rows),
                                   fmt="s--", color=colour, label=f"{label}{suffix}")
        drew_ref |= drew_ref_here
        drew_any |= drew_ref_here
    if not drew_any:
        return None
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("D (cm²/s)")
    ax.set_title("Li diffusivity (Arrhenius)", fontsize=10)
    ax.legend(fontsize=8)
    return png(fig)
