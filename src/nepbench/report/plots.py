"""Report figures: matplotlib (Agg, no pyplot state) → PNG bytes.

Each function takes plot data shaped as a result record's `series` (see report/render.py for the
shapes by task type) and returns PNG bytes, or None when the data it needs is missing or empty.
Data that is there but malformed (paired arrays of different lengths) raises ValueError, so the
report can say which figure it could not draw instead of leaving it out without a word.
Functions named `*_overlay_png` take `{label: series}` and draw every model on the same axes;
those that take `bounds` draw each `(value, label)` as a horizontal line (the suite's criteria: a
bound is never typed in here). `PER_TASK` and `OVERLAY` list the figures of each task type with the
series blocks they read (`FigureSpec.keys`), which the report names in each caption.
No file I/O: the caller decides where the bytes go. docs/report.md describes every figure.
"""

from __future__ import annotations

import io
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..config import real_number  # noqa: E402

ELEMENT_COLOURS = {"Li": "#7b3fa0", "Si": "#d98a00", "C": "#333333"}
REF_STYLE = {"color": "black", "lw": 1.6, "label": "DFT (CP2K)"}
HEXBIN_ABOVE = 400  # points: hexbin above this many, scatter below (a hexbin of a few points is empty)
DPI = 110


def _array(values: Any) -> np.ndarray | None:
    """A finite-able 1-D float array, or None when `values` is missing, empty or not numeric."""
    if values is None:
        return None
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return arr if arr.size else None


def _pair(values_a: Any, values_b: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Two arrays of equal length with at least one finite pair, or None when either is missing or no
    pair is finite; ValueError when both are there with different lengths (a malformed series)."""
    a, b = _array(values_a), _array(values_b)
    if a is None or b is None:
        return None
    if a.size != b.size:
        raise ValueError(f"paired series of different lengths ({a.size} and {b.size})")
    keep = np.isfinite(a) & np.isfinite(b)
    return (a[keep], b[keep]) if keep.any() else None


def _png(fig: Figure) -> bytes:
    """Render `fig` to PNG bytes (no software tag, so equal data give equal bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _colours(n: int) -> list[str]:
    """n distinguishable colours (tab10)."""
    return [matplotlib.colormaps["tab10"](i % 10) for i in range(n)]


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


def _motif_points(forces: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """(ref, pred, motif label per component) over every element whose series carries a `motif`
    list as long as its `ref`; None when no element does (the task recorded no labels)."""
    refs, preds, labels = [], [], []
    for data in forces.values():
        if not isinstance(data, Mapping) or not isinstance(data.get("motif"), list):
            continue
        ref, pred = _array(data.get("ref")), _array(data.get("pred"))
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
    for motif, colour in zip(motifs, _colours(len(motifs))):
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


def _force_panel_title(element: str, data: Mapping[str, Any], drawn_rmse_mev_per_a: float, n_drawn: int) -> str:
    """"Si: RMSE 327 meV/Å (n=12000; 3000 drawn)": the task's recorded RMSE over every component
    where the series carries it (the points drawn may be a subsample), else the drawn points' RMSE."""
    recorded, n_total = real_number(data.get("rmse_mev_per_a")), real_number(data.get("n_components"))
    if recorded is None or n_total is None or not (math.isfinite(recorded) and n_total >= n_drawn):
        return f"{element}: RMSE {drawn_rmse_mev_per_a:.0f} meV/Å (n={n_drawn})"
    shown = "" if int(n_total) == n_drawn else f"; {n_drawn} drawn"
    return f"{element}: RMSE {recorded:.0f} meV/Å (n={int(n_total)}{shown})"


def force_parity_png(series: Mapping[str, Any], title: str = "") -> bytes | None:
    """Force components, model vs DFT, one panel per element (a hexbin of log counts above
    HEXBIN_ABOVE points); RMSE in meV/Å on each panel. Where the series labels each component with
    its structure's motif (`forces.<element>.motif`, a list as long as `ref`), one more panel shows
    every component coloured by motif."""
    forces = series.get("forces") if isinstance(series, Mapping) else None
    if not isinstance(forces, Mapping):
        return None
    panels = [(el, p) for el, data in forces.items() if isinstance(data, Mapping)
              and (p := _pair(data.get("ref"), data.get("pred"))) is not None]
    if not panels:
        return None
    by_motif = _motif_points(forces)
    n_panels = len(panels) + (by_motif is not None)
    fig = Figure(figsize=(3.6 * n_panels, 3.6))
    for i, (element, (ref, pred)) in enumerate(panels):
        ax = fig.add_subplot(1, n_panels, i + 1)
        drawn_rmse_mev_per_a = 1000 * _parity_axes(ax, ref, pred, ELEMENT_COLOURS.get(element, "C0"), "eV/Å")
        ax.set_title(_force_panel_title(element, forces[element], drawn_rmse_mev_per_a, ref.size), fontsize=9)
    if by_motif is not None:
        _motif_panel(fig.add_subplot(1, n_panels, n_panels), *by_motif)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def force_error_by_element_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Distribution of force errors (model − DFT, meV/Å) per element: one panel per element, one
    step histogram per model on shared bins (log counts), each labelled with its RMSE (the recorded
    one over every component where the series carries it, as on the parity panels).

    Series layout (parity): {"forces": {element: {"ref": [...], "pred": [...]}}} (eV/Å).
    """
    errors: dict[str, dict[str, np.ndarray]] = {}
    rmse_text: dict[tuple[str, str], str] = {}
    for label, series in series_by_model.items():
        forces = series.get("forces") if isinstance(series, Mapping) else None
        for element, data in (forces or {}).items() if isinstance(forces, Mapping) else ():
            pair = _pair(data.get("ref"), data.get("pred")) if isinstance(data, Mapping) else None
            if pair is not None:
                err = 1000.0 * (pair[1] - pair[0])
                errors.setdefault(element, {})[label] = err
                title = _force_panel_title(element, data, float(np.sqrt(np.mean(err ** 2))), err.size)
                rmse_text[(element, label)] = title.split(": ", 1)[1]
    if not errors:
        return None
    fig = Figure()
    labels = list(series_by_model)
    colours = dict(zip(labels, _colours(len(labels))))
    for ax, element in zip(_grid(fig, len(errors)), errors):
        spread = max(float(np.percentile(np.abs(e), 99.5)) for e in errors[element].values()) or 1.0
        bins = np.linspace(-spread, spread, 41)
        for label, err in errors[element].items():
            ax.hist(np.clip(err, -spread, spread), bins=bins, histtype="step", lw=1.3, color=colours[label],
                    label=f"{label}: {rmse_text[(element, label)]}")
        ax.set_yscale("log")
        ax.set_xlabel("force error, model − DFT (meV/Å)")
        ax.set_ylabel("components")
        ax.set_title(f"{element} (tails clipped at ±{spread:.0f})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def energy_parity_png(series: Mapping[str, Any], title: str = "") -> bytes | None:
    """Energies per atom (offset-corrected), NEP vs DFT; RMSE in meV/atom."""
    energy = series.get("energy") if isinstance(series, Mapping) else None
    pair = _pair(energy.get("ref"), energy.get("pred")) if isinstance(energy, Mapping) else None
    if pair is None:
        return None
    fig = Figure(figsize=(3.8, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    rmse = _parity_axes(ax, pair[0], pair[1], "C0", "eV/atom")
    ax.set_title(f"energy: RMSE {1000 * rmse:.1f} meV/atom (n={pair[0].size})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def per_motif_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Force RMSE per structural motif, one bar per model (grouped)."""
    tables = {label: s.get("per_motif") for label, s in series_by_model.items()
              if isinstance(s, Mapping) and isinstance(s.get("per_motif"), Mapping)}
    motifs = sorted({m for table in tables.values() for m in table})
    if not motifs:
        return None
    fig = Figure(figsize=(max(5.0, 1.1 * len(motifs) * max(1, len(tables))), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(tables)
    x = np.arange(len(motifs))
    for i, ((label, table), colour) in enumerate(zip(tables.items(), _colours(len(tables)))):
        values = [_motif_value(table.get(m)) for m in motifs]
        ax.bar(x + (i - (len(tables) - 1) / 2) * width, values, width, label=label, color=colour)
    ax.set_xticks(x, motifs, rotation=20, ha="right")
    ax.set_ylabel("force RMSE (meV/Å)")
    ax.set_title("force RMSE by motif", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def _motif_value(entry: Any) -> float:
    """Force RMSE of one per-motif entry, NaN (no bar) when missing."""
    if isinstance(entry, Mapping):
        entry = entry.get("force_rmse_mev_per_a")
    try:
        return float(entry)
    except (TypeError, ValueError):
        return float("nan")


def _runs_of(series_by_model: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, Mapping[str, Any]]:
    """{model label: {AIMD run id: data}} from the md_accuracy series block `key` ("rdf" or "msd")."""
    return {label: s[key] for label, s in series_by_model.items()
            if isinstance(s, Mapping) and isinstance(s.get(key), Mapping) and s[key]}


def _grid(fig: Figure, n_panels: int, columns: int = 3) -> list[Any]:
    cols = min(columns, n_panels)
    rows = -(-n_panels // cols)
    fig.set_size_inches(4.0 * cols, 3.0 * rows)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]


def aimd_thermo_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """The AIMD reference runs themselves: temperature (black, target dotted) and potential energy per
    atom (blue, right axis) vs time, with the warm-up's end (dashed) and the detected start of a
    stationary potential energy (dash-dot). The same for every model, so drawn from the first that has it.

    Series layout (md_accuracy): {"aimd_thermo": {run id: {"time_ps", "temperature_k",
    "potential_ev_per_atom", "target_temperature_k", "warmup_ps", "equilibrated_ps"}}}.
    """
    runs = next(iter(_runs_of(series_by_model, "aimd_thermo").values()), None)
    panels = sorted(run for run, data in (runs or {}).items()
                    if isinstance(data, Mapping) and _pair(data.get("time_ps"), data.get("temperature_k")))
    if not panels:
        return None
    fig = Figure()
    for ax, run in zip(_grid(fig, len(panels)), panels):
        data = runs[run]
        t, temperature = _pair(data["time_ps"], data["temperature_k"])
        ax.plot(t, temperature, color="black", lw=0.8, label="T")
        target = data.get("target_temperature_k")
        if isinstance(target, (int, float)):
            ax.axhline(target, color="black", lw=0.8, ls=":")
        for key, style, label in (("warmup_ps", "--", "warm-up end"), ("equilibrated_ps", "-.", "E_pot stationary")):
            if isinstance(data.get(key), (int, float)):
                ax.axvline(data[key], color="grey", lw=1.0, ls=style, label=label)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("T (K)")
        ax.set_title(f"{run}: CP2K AIMD", fontsize=9)
        potential = _pair(data["time_ps"], data.get("potential_ev_per_atom"))
        if potential is not None:
            right = ax.twinx()
            right.plot(potential[0], potential[1] * 1000, color="tab:blue", lw=0.8)
            right.set_ylabel("E_pot − E_pot(0) (meV/atom)", color="tab:blue")
        ax.legend(fontsize=7, loc="upper right")
    fig.set_size_inches(fig.get_size_inches() * [1.3, 1.0])  # room for the right-hand axes
    fig.tight_layout()
    return _png(fig)


def _reference_and_models(ax: Any, curves: Sequence[tuple[str, Any, Any, Any]]) -> None:
    """One overlay panel from (model label, x, reference y, model y) per model, in model order: the
    reference in black, drawn once (from the first model that has it), each model dashed in its
    colour. A missing curve is left out; x and y of different lengths raise ValueError (`_pair`)."""
    drew_ref = False
    for (label, x, ref, model), colour in zip(curves, _colours(len(curves))):
        ref_xy, model_xy = _pair(x, ref), _pair(x, model)
        if ref_xy is not None and not drew_ref:
            ax.plot(*ref_xy, **REF_STYLE)
            drew_ref = True
        if model_xy is not None:
            ax.plot(*model_xy, color=colour, lw=1.2, ls="--", label=label)


def _curves_overlay(series_by_model: Mapping[str, Mapping[str, Any]], key: str, x_key: str, curves_key: str,
                    x_label: str, y_label: str) -> bytes | None:
    """One panel per (AIMD run, curve) of series block `key`, shaped {run: {x_key: [...], curves_key:
    {name: {"ref": [...], "model": [...]}}}}: the AIMD reference in black, each model dashed."""
    usable = _runs_of(series_by_model, key)
    panels = sorted({(run, name) for runs in usable.values() for run, data in runs.items()
                     if isinstance(data, Mapping) and isinstance(data.get(curves_key), Mapping)
                     for name in data[curves_key]})
    if not panels:
        return None
    fig = Figure()
    for ax, (run, name) in zip(_grid(fig, len(panels)), panels):
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
    return _png(fig)


def rdf_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """g(r) per AIMD run and species pair: the AIMD reference in black, each model in colour.

    Series layout (md_accuracy): {"rdf": {run id: {"r_a": [...], "pairs": {pair: {"ref", "model"}}}}}.
    """
    return _curves_overlay(series_by_model, "rdf", "r_a", "pairs", "r (Å)", "g(r)")


def adf_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Bond-angle distributions per AIMD run and triplet (centre atom in the middle, e.g. "Si-Si-Si").

    Series layout (md_accuracy): {"adf": {run id: {"theta_deg": [...], "triplets": {triplet: {"ref",
    "model"}}}}}; None while the task records no "adf" block.
    """
    return _curves_overlay(series_by_model, "adf", "theta_deg", "triplets", "angle (°)", "P(θ)")


def vdos_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Vibrational densities of states per AIMD run and species (velocity autocorrelation spectra).

    Series layout (md_accuracy): {"vdos": {run id: {"freq_thz": [...], "species": {species: {"ref",
    "model"}}}}}; None while the task records no "vdos" block.
    """
    return _curves_overlay(series_by_model, "vdos", "freq_thz", "species", "frequency (THz)", "VDOS (arb.)")


def _fit_window(value: Any) -> tuple[float, float] | None:
    """A recorded MSD fit window (t_start, t_end) in ps, or None when absent or not two increasing numbers."""
    window = _array(value)
    if window is None or window.size != 2 or not np.all(np.isfinite(window)) or window[1] <= window[0]:
        return None
    return float(window[0]), float(window[1])


def msd_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Mean squared displacement vs time per AIMD run and species: AIMD in black, models in colour,
    and the window D is fitted over shaded where the series records it.

    Series layout (md_accuracy): {"msd": {run id: {species: {"time_ps", "ref", "model",
    "fit_window_ps": [t_start, t_end] (optional)}}}}.
    """
    usable = _runs_of(series_by_model, "msd")
    panels = sorted({(run, sp) for runs in usable.values() for run, data in runs.items()
                     if isinstance(data, Mapping) for sp in data})
    if not panels:
        return None
    fig = Figure()
    for ax, (run, sp) in zip(_grid(fig, len(panels)), panels):
        curves, window = [], None
        for label, runs in usable.items():
            data = (runs.get(run) or {}).get(sp) or {}
            curves.append((label, data.get("time_ps"), data.get("ref"), data.get("model")))
            window = window or _fit_window(data.get("fit_window_ps"))
        _reference_and_models(ax, curves)
        if window is not None:
            ax.axvspan(*window, color="grey", alpha=0.18, lw=0,
                       label=f"D fit window {1000 * window[0]:.0f}–{1000 * window[1]:.0f} fs")
        ax.set_title(f"{run}: {sp} MSD", fontsize=9)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("MSD (Å²)")
        ax.legend(fontsize=7)
    return _png(fig)


def _rows(values: Any, rows: np.ndarray) -> np.ndarray | None:
    """The entries of a per-point series at the `rows` mask, or None when it is absent or of another length."""
    array = _array(values)
    return array[rows] if array is not None and array.size == rows.size else None


def _errorbars(ax: Any, x: np.ndarray, y: Any, err: Any, **style: Any) -> bool:
    """Plot y(x) with optional error bars, dropping non-positive y (log axes); True if drawn."""
    y_arr = _array(y)
    if y_arr is None or y_arr.size != x.size:
        return False
    e_arr = _array(err)
    keep = np.isfinite(y_arr) & (y_arr > 0)
    if not keep.any():
        return False
    yerr = e_arr[keep] if e_arr is not None and e_arr.size == x.size else None
    ax.errorbar(x[keep], y_arr[keep], yerr=yerr, capsize=3, **style)
    return True


def arrhenius_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Li diffusivity vs 1000/T on a log axis: AIMD reference and each model, with standard errors."""
    usable = {label: s["arrhenius"] for label, s in series_by_model.items()
              if isinstance(s, Mapping) and isinstance(s.get("arrhenius"), Mapping)
              and _array(s["arrhenius"].get("temperature_k")) is not None}
    if not usable:
        return None
    fig = Figure(figsize=(5.0, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_yscale("log")
    drew_ref, drew_any = False, False
    for (label, data), colour in zip(usable.items(), _colours(len(usable))):
        temps = _array(data["temperature_k"])
        systems = data.get("system")
        systems = list(systems) if isinstance(systems, list) and len(systems) == temps.size else [""] * temps.size
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
    return _png(fig)


def throughput_bars_png(series: Mapping[str, Any], title: str = "") -> bytes | None:
    """Seconds per MD step, CP2K vs NEP on identical cells (log axis), speed ratio on top."""
    rows = series.get("identical_n") if isinstance(series, Mapping) else None
    rows = [r for r in rows or [] if isinstance(r, Mapping)
            and _pair([r.get("cp2k_s_per_step")], [r.get("nep_s_per_step")]) is not None]
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
    return _png(fig)


def _bound_lines(ax: Any, bounds: Sequence[tuple[float, str]]) -> None:
    """Each (value, label) of `bounds` as a red dashed horizontal line."""
    for value, label in bounds:
        ax.axhline(float(value), color="red", lw=0.9, ls="--", label=label)


def _log_limits(set_limits: Callable[[float, float], Any], values: np.ndarray) -> None:
    """Log-axis limits a factor 3 beyond the positive `values`, so one point or a narrow range still
    shows a decade or more."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size:
        set_limits(float(positive.min()) / 3, float(positive.max()) * 3)


def _speedup_fit(fits: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(N, fitted CP2K s/step ÷ fitted NEP s/step) over the sizes both fits span, or None when the
    series holds no pair of power-law fits (`fits.cp2k` and `fits.nep_cpu`: exponent, prefactor_s, n_atoms)."""
    if not isinstance(fits, Mapping):
        return None
    cp2k, nep = fits.get("cp2k"), fits.get("nep_cpu")
    if not (isinstance(cp2k, Mapping) and isinstance(nep, Mapping)):
        return None
    terms = [real_number(f.get(k)) for f in (cp2k, nep) for k in ("exponent", "prefactor_s")]
    sizes = [_array(f.get("n_atoms")) for f in (cp2k, nep)]
    if any(t is None or not math.isfinite(t) for t in terms) or any(n is None for n in sizes):
        return None
    b_cp2k, a_cp2k, b_nep, a_nep = terms
    if a_cp2k <= 0 or a_nep <= 0:
        return None
    every = np.concatenate(sizes)
    n = np.geomspace(max(1.0, float(every.min())), float(every.max()), 50)
    return n, (a_cp2k * n ** b_cp2k) / (a_nep * n ** b_nep)


def speedup_vs_n_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]],
                             bounds: Sequence[tuple[float, str]] = ()) -> bytes | None:
    """Speed-up over CP2K vs number of atoms on log-log axes, per model: the ratios measured on
    identical cells (circles CPU NEP, squares GPU NEP), the ratio of the two power-law fits where
    the series holds them (dashed), and each of `bounds` (the claim, e.g. the 70,000× of the study)
    as a red dashed line. A ratio the task withheld (CP2K timed on a busy machine) is not drawn.

    Series layout (throughput): {"identical_n": [{"n_atoms", "ratio", "ratio_gpu" (optional)}],
    "fits": {"cp2k": {...}, "nep_cpu": {...}}}.
    """
    drawn: list[tuple[str, str, np.ndarray, np.ndarray, str]] = []
    for label, series in series_by_model.items():
        rows = series.get("identical_n") if isinstance(series, Mapping) else None
        rows = [r for r in rows or [] if isinstance(r, Mapping)]
        for key, marker, kind in (("ratio", "o", "CPU"), ("ratio_gpu", "s", "GPU")):
            points = [(real_number(r.get("n_atoms")), real_number(r.get(key))) for r in rows]
            points = [(n, v) for n, v in points if n and v and n > 0 and v > 0 and math.isfinite(n * v)]
            if points:
                n, v = np.array(points, dtype=float).T
                drawn.append((label, marker, n, v, kind))
        fit = _speedup_fit(series.get("fits") if isinstance(series, Mapping) else None)
        if fit is not None:
            drawn.append((label, "--", fit[0], fit[1], "fit"))
    if not drawn:
        return None
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    colours = dict(zip(series_by_model, _colours(len(series_by_model))))
    for label, marker, n, v, kind in drawn:
        if kind == "fit":
            ax.plot(n, v, "--", color=colours[label], lw=1.0, label=f"{label}: ratio of power-law fits")
        else:
            ax.plot(n, v, marker, color=colours[label], ms=7, ls="-" if n.size > 1 else "",
                    label=f"{label}: {kind} NEP, identical cells")
    _bound_lines(ax, bounds)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_limits(ax.set_xlim, np.concatenate([n for _, _, n, _, _ in drawn]))
    _log_limits(ax.set_ylim, np.concatenate([v for _, _, _, v, _ in drawn] + [np.array([b for b, _ in bounds])]))
    ax.set_xlabel("atoms (N)")
    ax.set_ylabel("speed-up over CP2K (×)")
    ax.set_title("speed-up vs system size", fontsize=10)
    ax.legend(fontsize=7)
    return _png(fig)


def scaling_png(series: Mapping[str, Any], title: str = "") -> bytes | None:
    """Seconds per atom-step vs number of atoms, log-log, one line per engine."""
    scaling = series.get("scaling") if isinstance(series, Mapping) else None
    if not isinstance(scaling, Mapping):
        return None
    lines = [(engine, p) for engine, data in scaling.items() if isinstance(data, Mapping)
             and (p := _pair(data.get("n_atoms"), data.get("s_per_atom_step"))) is not None]
    lines = [(e, (n[(n > 0) & (s > 0)], s[(n > 0) & (s > 0)])) for e, (n, s) in lines]
    lines = [(e, p) for e, p in lines if p[0].size]
    if not lines:
        return None
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for (engine, (n, s)), colour in zip(lines, _colours(len(lines))):
        order = np.argsort(n)
        ax.plot(n[order], s[order], "o-", color=colour, label=engine)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms")
    ax.set_ylabel("wall time per atom-step (s)")
    ax.set_title(f"cost scaling {title}".strip(), fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def expansion_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]],
                          limit_percent: float | None = None,
                          bounds: Sequence[tuple[float, str]] = ()) -> bytes | None:
    """Particle (and core) volume expansion vs carbon-shell thickness, with error bars, per model.

    `limit_percent` and each (percent, label) of `bounds` draw a horizontal line at a claimed bound
    (bounds belong to the suite's criteria, so none is drawn unless the caller passes one).
    """
    usable = {label: s for label, s in series_by_model.items() if isinstance(s, Mapping)
              and _pair(s.get("shell_thickness_nm"), s.get("particle_dv_over_v0")) is not None}
    if not usable:
        return None
    fig = Figure(figsize=(5.4, 3.9))
    ax = fig.add_subplot(1, 1, 1)
    for (label, s), colour in zip(usable.items(), _colours(len(usable))):
        t = _array(s["shell_thickness_nm"])
        dv = 100.0 * _array(s["particle_dv_over_v0"])
        err = _array(s.get("particle_dv_stderr"))
        yerr = 100.0 * err if err is not None and err.size == t.size else None
        ax.errorbar(t, dv, yerr=yerr, fmt="o-", capsize=3, color=colour, label=f"{label}: particle")
        core = _array(s.get("core_dv_over_v0"))
        if core is not None and core.size == t.size:
            ax.plot(t, 100.0 * core, "s:", color=colour, alpha=0.7, label=f"{label}: Si core")
    if limit_percent is not None:
        ax.axhline(limit_percent, color="red", lw=0.8, ls="--", label=f"{limit_percent:g} % claim")
    _bound_lines(ax, bounds)
    ax.set_xlabel("carbon shell thickness (nm)")
    ax.set_ylabel("ΔV / V₀ (%)")
    ax.set_title("Si@C volume expansion on lithiation", fontsize=10)
    ax.legend(fontsize=7)
    return _png(fig)


def radial_png(series: Mapping[str, Any], title: str = "") -> bytes | None:
    """Li fraction and strain vs radius, one line per shell thickness (nm)."""
    radial = series.get("radial") if isinstance(series, Mapping) else None
    if not isinstance(radial, Mapping):
        return None
    profiles = [(key, data) for key, data in sorted(radial.items(), key=lambda kv: _as_float(kv[0]))
                if isinstance(data, Mapping) and _array(data.get("r_nm")) is not None]
    if not profiles:
        return None
    fig = Figure(figsize=(9.0, 3.6))
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    drew = False
    for (key, data), colour in zip(profiles, _colours(len(profiles))):
        r = _array(data["r_nm"])
        for ax, field in zip(axes, ("li_fraction", "strain")):
            y = _array(data.get(field))
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
    return _png(fig)


def _as_float(text: Any) -> float:
    """Sort key: float(text), or +inf when it is not a number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("inf")


class FigureSpec(NamedTuple):
    """One figure of a task type.

    kind: the file-name suffix; caption: what it shows; function: the drawing function;
    keys: the series blocks it reads (the caption names them as its data source);
    bound_metrics: criteria on the group's tasks whose metric starts with one of these are drawn
    as lines (`bounds`), so the line of a claim comes from the suite, never from code.
    """

    kind: str
    caption: str
    function: Callable[..., bytes | None]
    keys: tuple[str, ...]
    bound_metrics: tuple[str, ...] = ()


# PER_TASK functions take (series, title) for one record; OVERLAY functions take {model label: series}
# and draw all models of a task template together.
PER_TASK: dict[str, Sequence[FigureSpec]] = {
    "parity": (FigureSpec("forces", "Force components, model vs DFT (y = x dashed; hexbin of log counts "
                                    "where there are many points)", force_parity_png, ("forces",)),
               FigureSpec("energy", "Energy per atom, model vs DFT (offset-corrected)", energy_parity_png,
                          ("energy",))),
    "md_accuracy": (),
    "throughput": (FigureSpec("identical", "CP2K vs NEP wall time per step on identical cells",
                              throughput_bars_png, ("identical_n",)),
                   FigureSpec("scaling", "Cost per atom-step vs system size (log-log)", scaling_png,
                              ("scaling",))),
    "expansion": (FigureSpec("radial", "Radial Li fraction and strain profiles", radial_png, ("radial",)),),
}
OVERLAY: dict[str, Sequence[FigureSpec]] = {
    "parity": (FigureSpec("errors", "Force error distribution by element, models overlaid", force_error_by_element_png,
                          ("forces",)),
               FigureSpec("motifs", "Force RMSE by structural motif, models side by side", per_motif_overlay_png,
                          ("per_motif",))),
    "md_accuracy": (FigureSpec("aimd", "The CP2K AIMD references: temperature and potential energy, warm-up end "
                                       "(dashed) and detected equilibration (dash-dot)", aimd_thermo_png,
                               ("aimd_thermo",)),
                    FigureSpec("rdf", "Radial distribution functions: AIMD (black) vs models (dashed)",
                               rdf_overlay_png, ("rdf",)),
                    FigureSpec("adf", "Bond-angle distributions: AIMD (black) vs models (dashed)", adf_overlay_png,
                               ("adf",)),
                    FigureSpec("vdos", "Vibrational density of states: AIMD (black) vs models (dashed)",
                               vdos_overlay_png, ("vdos",)),
                    FigureSpec("msd", "Mean squared displacement: AIMD (black) vs models (dashed), D fit window "
                                      "shaded where recorded", msd_overlay_png, ("msd",)),
                    FigureSpec("arrhenius", "Li diffusivity vs inverse temperature", arrhenius_overlay_png,
                               ("arrhenius",))),
    "throughput": (FigureSpec("speedup", "Speed-up over CP2K vs system size (log-log), with the claimed speed-up "
                                         "as a red dashed line", speedup_vs_n_overlay_png, ("identical_n", "fits"),
                              ("speedup",)),),
    "expansion": (FigureSpec("expansion", "Volume expansion vs carbon shell thickness (± standard error), with "
                                          "the claimed bound as a red dashed line", expansion_overlay_png,
                             ("shell_thickness_nm", "particle_dv_over_v0", "particle_dv_stderr", "core_dv_over_v0"),
                             ("particle_dv_over_v0_percent",)),),
}


def missing_figure_data(task_type: str, series_by_model: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What the figures of `task_type` would draw but no finished record of the group holds: one
    line each (for the report's "cannot conclude" box), [] when nothing is missing.

    Checks the optional blocks only: ADF and vDOS (md_accuracy), the MSD fit window, and the
    per-component motif labels of force parity.
    """
    series = [s for s in series_by_model.values() if isinstance(s, Mapping)]
    if not series:
        return []
    out = []
    if task_type == "md_accuracy":
        for key, what in (("adf", "bond-angle distributions (ADF)"), ("vdos", "vibrational densities of states")):
            if not any(s.get(key) for s in series):
                out.append(f"{what}: not recorded by the md_accuracy task (no series '{key}'), so not compared")
        msd = [sp for s in series if isinstance(s.get("msd"), Mapping) for run in s["msd"].values()
               if isinstance(run, Mapping) for sp in run.values() if isinstance(sp, Mapping)]
        if msd and not any(_fit_window(sp.get("fit_window_ps")) for sp in msd):
            out.append("MSD fit window: not recorded in the series (msd.<run>.<species>.fit_window_ps), so the "
                       "MSD figure cannot mark it; the window is stated in the metric reasons")
    if task_type == "parity":
        forces = [s["forces"] for s in series if isinstance(s.get("forces"), Mapping)]
        if forces and not any(isinstance(d, Mapping) and isinstance(d.get("motif"), list)
                              for f in forces for d in f.values()):
            out.append("force parity by motif: the parity series labels no force component with its motif "
                       "(forces.<element>.motif), so parity is drawn per element; per-motif RMSE is shown as bars")
    return out
