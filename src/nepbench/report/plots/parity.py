"""The parity task's figures: force and energy parity and, for a model with a seed ensemble, its
per-frame force error vs the ensemble's spread (one record); force-error distributions and force
RMSE by motif (models overlaid). Series: `tasks.parity.ParitySeries`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from ...checks import real_number
from ...metrics.uncertainty import spearman_rho
from .common import array, colours, grid, pair, png, tables

if TYPE_CHECKING:
    from ...tasks.parity import EnsembleSpread, ForceParity, MotifForces, ParitySeries

ELEMENT_COLOURS = {"Li": "#7b3fa0", "Si": "#d98a00", "C": "#333333"}
HEXBIN_ABOVE = 400  # points: hexbin above this many, scatter below (a hexbin of a few points is empty)


def _parity_axes(ax: Any, ref: np.ndarray, pred: np.ndarray, colour: str, unit: str) -> float:
    """Draw one parity panel (hexbin of log counts above HEXBIN_ABOVE points, else a scatter; y = x
    dashed); returns the RMSE of the points drawn."""
    low, high = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    pad = 0.05 * (high - low or 1.0)
    if ref.size > HEXBIN_ABOVE:
        gridsize = int(np.clip(np.sqrt(ref.size), 35, 60))
        ax.hexbin(ref, pred, gridsize=gridsize, bins="log", mincnt=1, cmap="viridis",
                  extent=(low - pad, high + pad, low - pad, high + pad))
    else:
        ax.scatter(ref, pred, s=6, alpha=0.6, color=colour, linewidths=0)
    _unit_diagonal(ax, low - pad, high + pad)
    ax.set_xlabel(f"DFT ({unit})")
    ax.set_ylabel(f"model ({unit})")
    return float(np.sqrt(np.mean((pred - ref) ** 2)))


def _unit_diagonal(ax: Any, low: float, high: float) -> None:
    """y = x (dashed) on square axes from `low` to `high`."""
    ax.plot([low, high], [low, high], "k--", lw=0.8)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")


def _motif_points(forces: Mapping[str, ForceParity]) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """(ref, pred, motif label per component) over every element whose series carries a `motif`
    list as long as its `ref`; None when no element does (the task recorded no labels)."""
    refs, preds, labels = [], [], []
    for data in forces.values():
        if data.get("motif") is None:
            continue
        ref, pred = array(data.get("ref")), array(data.get("pred"))
        if ref is None or pred is None or not (ref.size == pred.size == len(data["motif"])):
            raise ValueError("forces.<element>.motif must label every component of ref and pred")
        keep = np.isfinite(ref) & np.isfinite(pred)
        refs.append(ref[keep])
        preds.append(pred[keep])
        labels += [str(m) for m, k in zip(data["motif"], keep) if k]
    if not labels:
        return None
    return np.concatenate(refs), np.concatenate(preds), labels


def _motif_panel(ax: Any, ref: np.ndarray, pred: np.ndarray, labels: Sequence[str]) -> None:
    """Every force component, coloured by its structure's motif (largest motif drawn first)."""
    motifs = sorted(set(labels), key=lambda m: -labels.count(m))
    tags = np.array(labels)
    for motif, colour in zip(motifs, colours(len(motifs))):
        rows = tags == motif
        ax.scatter(ref[rows], pred[rows], s=4, alpha=0.5, color=colour, linewidths=0,
                   label=f"{motif} (n={int(rows.sum())})")
    low, high = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    pad = 0.05 * (high - low or 1.0)
    _unit_diagonal(ax, low - pad, high + pad)
    ax.set_xlabel("DFT (eV/Å)")
    ax.set_ylabel("model (eV/Å)")
    ax.set_title("all elements, by motif", fontsize=9)
    ax.legend(fontsize=7, markerscale=2)


def force_panel_title(element: str, data: ForceParity, drawn_rmse_mev_per_a: float, n_drawn: int) -> str:
    """"Si: RMSE 327 meV/Å (n=12000; 3000 drawn)": the task's recorded RMSE over every component
    where the series carries it (the points drawn may be a subsample), else the drawn points' RMSE."""
    recorded, n_total = real_number(data.get("rmse_mev_per_a")), real_number(data.get("n_components"))
    if recorded is None or n_total is None or not (math.isfinite(recorded) and n_total >= n_drawn):
        return f"{element}: RMSE {drawn_rmse_mev_per_a:.0f} meV/Å (n={n_drawn})"
    shown = "" if int(n_total) == n_drawn else f"; {n_drawn} drawn"
    return f"{element}: RMSE {recorded:.0f} meV/Å (n={int(n_total)}{shown})"


def force_parity_png(series: ParitySeries, title: str = "") -> bytes | None:
    """Force components, model vs DFT, one panel per element (a hexbin of log counts above
    HEXBIN_ABOVE points); RMSE in meV/Å on each panel. Where the series labels each component with
    its structure's motif (`forces.<element>.motif`, a list as long as `ref`), one more panel shows
    every component coloured by motif."""
    forces = tables(series.get("forces"))
    panels = [(el, p) for el, data in forces.items() if (p := pair(data.get("ref"), data.get("pred"))) is not None]
    if not panels:
        return None
    by_motif = _motif_points(forces)
    n_panels = len(panels) + (by_motif is not None)
    fig = Figure(figsize=(3.6 * n_panels, 3.6))
    for i, (element, (ref, pred)) in enumerate(panels):
        ax = fig.add_subplot(1, n_panels, i + 1)
        drawn_rmse_mev_per_a = 1000 * _parity_axes(ax, ref, pred, ELEMENT_COLOURS.get(element, "C0"), "eV/Å")
        ax.set_title(force_panel_title(element, forces[element], drawn_rmse_mev_per_a, ref.size), fontsize=9)
    if by_motif is not None:
        _motif_panel(fig.add_subplot(1, n_panels, n_panels), *by_motif)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)


def force_error_by_element_png(series_by_model: Mapping[str, ParitySeries]) -> bytes | None:
    """Distribution of force errors (model − DFT, meV/Å) per element: one panel per element, one
    step histogram per model on shared bins (log counts), each labelled with its RMSE (the recorded
    one over every component where the series carries it, as on the parity panels).

    Series: `ParitySeries.forces` (eV/Å).
    """
    errors: dict[str, dict[str, np.ndarray]] = {}
    rmse_text: dict[tuple[str, str], str] = {}
    for label, series in series_by_model.items():
        for element, data in tables(series.get("forces")).items():
            points = pair(data.get("ref"), data.get("pred"))
            if points is not None:
                err = 1000.0 * (points[1] - points[0])
                errors.setdefault(element, {})[label] = err
                title = force_panel_title(element, data, float(np.sqrt(np.mean(err ** 2))), err.size)
                rmse_text[(element, label)] = title.split(": ", 1)[1]
    if not errors:
        return None
    fig = Figure()
    labels = list(series_by_model)
    colour_of = dict(zip(labels, colours(len(labels))))
    for ax, element in zip(grid(fig, len(errors)), errors):
        spread = max(float(np.percentile(np.abs(e), 99.5)) for e in errors[element].values()) or 1.0
        bins = np.linspace(-spread, spread, 41)
        for label, err in errors[element].items():
            ax.hist(np.clip(err, -spread, spread), bins=bins, histtype="step", lw=1.3, color=colour_of[label],
                    label=f"{label}: {rmse_text[(element, label)]}")
        ax.set_yscale("log")
        ax.set_xlabel("force error, model − DFT (meV/Å)")
        ax.set_ylabel("components")
        ax.set_title(f"{element} (tails clipped at ±{spread:.0f})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def energy_parity_png(series: ParitySeries, title: str = "") -> bytes | None:
    """Energies per atom (offset-corrected), NEP vs DFT; RMSE in meV/atom."""
    energy = series.get("energy")  # absent where the task could not fit the offsets
    points = pair(energy.get("ref"), energy.get("pred")) if energy is not None else None
    if points is None:
        return None
    fig = Figure(figsize=(3.8, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    rmse = _parity_axes(ax, points[0], points[1], "C0", "eV/atom")
    ax.set_title(f"energy: RMSE {1000 * rmse:.1f} meV/atom (n={points[0].size})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return png(fig)


def per_motif_overlay_png(series_by_model: Mapping[str, ParitySeries]) -> bytes | None:
    """Force RMSE per structural motif, one bar per model (grouped)."""
    by_model = {label: s["per_motif"] for label, s in series_by_model.items() if s.get("per_motif")}
    motifs = sorted({m for table in by_model.values() for m in table})
    if not motifs:
        return None
    fig = Figure(figsize=(max(5.0, 1.1 * len(motifs) * max(1, len(by_model))), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(by_model)
    x = np.arange(len(motifs))
    for i, ((label, table), colour) in enumerate(zip(by_model.items(), colours(len(by_model)))):
        values = [_motif_value(table.get(m)) for m in motifs]
        ax.bar(x + (i - (len(by_model) - 1) / 2) * width, values, width, label=label, color=colour)
    ax.set_xticks(x, motifs, rotation=20, ha="right")
    ax.set_ylabel("force RMSE (meV/Å)")
    ax.set_title("force RMSE by motif", fontsize=10)
    ax.legend(fontsize=8)
    return png(fig)


def _motif_value(entry: MotifForces | None) -> float:
    """Force RMSE of one per-motif entry, NaN (no bar) where a model has no frame of the motif."""
    return float("nan") if entry is None else float(entry["force_rmse_mev_per_a"])


def _ensemble_points(series: ParitySeries) -> tuple[np.ndarray, np.ndarray, list[str] | None, float] | None:
    """(per-frame σ, per-frame force RMSE (meV/Å), each frame's motif or None, Spearman ρ) of the
    series' `ensemble` block over its finite pairs; None without the block (a model without an
    ensemble, an older record). ValueError for lists of different lengths."""
    block: EnsembleSpread | None = series.get("ensemble")
    if not isinstance(block, Mapping):
        return None
    sigma, error = array(block.get("frame_sigma_mev_per_a")), array(block.get("frame_force_rmse_mev_per_a"))
    if sigma is None or error is None:
        return None
    if sigma.size != error.size:
        raise ValueError(f"ensemble: {sigma.size} frame σ but {error.size} frame errors")
    motifs = block.get("frame_motif")
    if motifs is not None and len(motifs) != sigma.size:
        raise ValueError(f"ensemble: {len(motifs)} frame motifs for {sigma.size} frames")
    keep = np.isfinite(sigma) & np.isfinite(error)
    if not keep.any():
        return None
    labels = [str(m) for m, k in zip(motifs, keep) if k] if motifs is not None else None
    return sigma[keep], error[keep], labels, spearman_rho(sigma[keep], error[keep])


def ensemble_caption(series: ParitySeries) -> str | None:
    """"Spearman ρ = 0.62 over 14 frames; 3 members" for the error-vs-σ figure's caption (ρ of the
    series' frames, as the task's `force_sigma_error_spearman`), None without an ensemble block."""
    points = _ensemble_points(series)
    if points is None:
        return None
    sigma, _, _, rho = points
    members = real_number((series.get("ensemble") or {}).get("members"))
    rho_text = (f"Spearman ρ = {rho:.2f}" if math.isfinite(rho)
                else "Spearman ρ undefined (fewer than 3 frames, or σ or error constant)")
    return f"{rho_text} over {sigma.size} frames" + (f"; {int(members)} members" if members is not None else "")


def error_vs_sigma_png(series: ParitySeries, title: str = "") -> bytes | None:
    """Per-frame force RMSE of the registered model vs its seed ensemble's force spread σ (both
    meV/Å), one point per scored frame coloured by motif where the series names them, y = σ dashed;
    Spearman's ρ in the panel title. None without the series' `ensemble` block."""
    points = _ensemble_points(series)
    if points is None:
        return None
    sigma, error, labels, _ = points
    fig = Figure(figsize=(4.6, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    groups = sorted(set(labels), key=lambda m: -labels.count(m)) if labels else [None]
    tags = np.array(labels) if labels else None
    for motif, colour in zip(groups, colours(len(groups))):
        rows = tags == motif if tags is not None else np.ones(sigma.size, dtype=bool)
        ax.scatter(sigma[rows], error[rows], s=18, alpha=0.75, color=colour, linewidths=0,
                   label=f"{motif} (n={int(rows.sum())})" if motif is not None else None)
    high = 1.05 * float(max(sigma.max(), error.max())) or 1.0
    ax.plot([0, high], [0, high], "k--", lw=0.8, label="error = σ")
    ax.set_xlim(0, high)
    ax.set_ylim(0, high)
    ax.set_xlabel("ensemble force spread σ per frame (meV/Å)")
    ax.set_ylabel("force RMSE per frame (meV/Å)")
    ax.set_title(ensemble_caption(series) or "", fontsize=9)
    ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return png(fig)
