"""Report figures: matplotlib (Agg, no pyplot state) → PNG bytes.

Each function takes plot data shaped as a result record's `series` (see report/render.py for the
shapes by task type) and returns PNG bytes, or None when the data it needs is missing or empty.
Data that is there but malformed (paired arrays of different lengths) raises ValueError, so the
report can say which figure it could not draw instead of leaving it out without a word.
Functions named `*_overlay_png` take `{label: series}` and draw every model on the same axes.
No file I/O: the caller decides where the bytes go.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..config import real_number  # noqa: E402

ELEMENT_COLOURS = {"Li": "#7b3fa0", "Si": "#d98a00", "C": "#333333"}
REF_STYLE = {"color": "black", "lw": 1.6, "label": "DFT (CP2K)"}
HEXBIN_ABOVE = 3000  # points: hexbin above this many, scatter below
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
    """Draw one parity panel (hexbin or scatter, y = x); returns the RMSE."""
    low, high = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    pad = 0.05 * (high - low or 1.0)
    if ref.size > HEXBIN_ABOVE:
        ax.hexbin(ref, pred, gridsize=60, bins="log", mincnt=1, cmap="viridis",
                  extent=(low - pad, high + pad, low - pad, high + pad))
    else:
        ax.scatter(ref, pred, s=6, alpha=0.6, color=colour, linewidths=0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=0.8)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"DFT ({unit})")
    ax.set_ylabel(f"NEP ({unit})")
    return float(np.sqrt(np.mean((pred - ref) ** 2)))


def _force_panel_title(element: str, data: Mapping[str, Any], drawn_rmse_mev_per_a: float, n_drawn: int) -> str:
    """"Si: RMSE 327 meV/Å (n=12000; 3000 drawn)": the task's recorded RMSE over every component
    where the series carries it (the points drawn may be a subsample), else the drawn points' RMSE."""
    recorded, n_total = real_number(data.get("rmse_mev_per_a")), real_number(data.get("n_components"))
    if recorded is None or n_total is None or not (math.isfinite(recorded) and n_total >= n_drawn):
        return f"{element}: RMSE {drawn_rmse_mev_per_a:.0f} meV/Å (n={n_drawn})"
    shown = "" if int(n_total) == n_drawn else f"; {n_drawn} drawn"
    return f"{element}: RMSE {recorded:.0f} meV/Å (n={int(n_total)}{shown})"


def force_parity_png(series: Mapping[str, Any], title: str = "") -> bytes | None:
    """Force components, NEP vs DFT, one panel per element; RMSE in meV/Å on each panel."""
    forces = series.get("forces") if isinstance(series, Mapping) else None
    if not isinstance(forces, Mapping):
        return None
    panels = [(el, p) for el, data in forces.items() if isinstance(data, Mapping)
              and (p := _pair(data.get("ref"), data.get("pred"))) is not None]
    if not panels:
        return None
    fig = Figure(figsize=(3.6 * len(panels), 3.6))
    for i, (element, (ref, pred)) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        drawn_rmse_mev_per_a = 1000 * _parity_axes(ax, ref, pred, ELEMENT_COLOURS.get(element, "C0"), "eV/Å")
        ax.set_title(_force_panel_title(element, forces[element], drawn_rmse_mev_per_a, ref.size), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
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


def rdf_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """g(r) per AIMD run and species pair: the AIMD reference in black, each model in colour.

    Series layout (md_accuracy): {"rdf": {run id: {"r_a": [...], "pairs": {pair: {"ref", "model"}}}}}.
    """
    usable = _runs_of(series_by_model, "rdf")
    panels = sorted({(run, pair) for runs in usable.values() for run, data in runs.items()
                     if isinstance(data, Mapping) and isinstance(data.get("pairs"), Mapping)
                     for pair in data["pairs"]})
    if not panels:
        return None
    fig = Figure()
    for ax, (run, pair) in zip(_grid(fig, len(panels)), panels):
        curves = []
        for label, runs in usable.items():
            data = runs.get(run) or {}
            pair_curves = (data.get("pairs") or {}).get(pair) or {}
            curves.append((label, data.get("r_a"), pair_curves.get("ref"), pair_curves.get("model")))
        _reference_and_models(ax, curves)
        ax.set_title(f"{run}: {pair}", fontsize=9)
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.legend(fontsize=7)
    return _png(fig)


def msd_overlay_png(series_by_model: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Mean squared displacement vs time per AIMD run and species: AIMD in black, models in colour.

    Series layout (md_accuracy): {"msd": {run id: {species: {"time_ps", "ref", "model"}}}}.
    """
    usable = _runs_of(series_by_model, "msd")
    panels = sorted({(run, sp) for runs in usable.values() for run, data in runs.items()
                     if isinstance(data, Mapping) for sp in data})
    if not panels:
        return None
    fig = Figure()
    for ax, (run, sp) in zip(_grid(fig, len(panels)), panels):
        curves = []
        for label, runs in usable.items():
            data = (runs.get(run) or {}).get(sp) or {}
            curves.append((label, data.get("time_ps"), data.get("ref"), data.get("model")))
        _reference_and_models(ax, curves)
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
                          limit_percent: float | None = None) -> bytes | None:
    """Particle (and core) volume expansion vs carbon-shell thickness, with error bars, per model.

    `limit_percent` draws a horizontal line at a claimed bound (bounds belong to the suite's
    criteria, so none is drawn unless the caller passes one).
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


# Plot kinds by task type, (name, caption, function). PER_TASK functions take (series, title) for one
# record; OVERLAY functions take {model label: series} and draw all models of a task template together.
PER_TASK: dict[str, Sequence[tuple[str, str, Any]]] = {
    "parity": (("forces", "Force components, NEP vs DFT (y = x dashed)", force_parity_png),
               ("energy", "Energy per atom, NEP vs DFT (offset-corrected)", energy_parity_png)),
    "md_accuracy": (),
    "throughput": (("identical", "CP2K vs NEP wall time per step on identical cells", throughput_bars_png),
                   ("scaling", "Cost per atom-step vs system size (log-log)", scaling_png)),
    "expansion": (("radial", "Radial Li fraction and strain profiles", radial_png),),
}
OVERLAY: dict[str, Sequence[tuple[str, str, Any]]] = {
    "parity": (("motifs", "Force RMSE by structural motif, models side by side", per_motif_overlay_png),),
    "md_accuracy": (("aimd", "The CP2K AIMD references: temperature and potential energy, warm-up end (dashed) "
                             "and detected equilibration (dash-dot)", aimd_thermo_png),
                    ("rdf", "Radial distribution functions: AIMD (black) vs models (dashed)", rdf_overlay_png),
                    ("msd", "Mean squared displacement: AIMD (black) vs models (dashed)", msd_overlay_png),
                    ("arrhenius", "Li diffusivity vs inverse temperature", arrhenius_overlay_png)),
    "throughput": (),
    "expansion": (("expansion", "Volume expansion vs carbon shell thickness (± standard error)",
                   expansion_overlay_png),),
}
