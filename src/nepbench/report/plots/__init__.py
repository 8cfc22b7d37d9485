"""Report figures: matplotlib (Agg, no pyplot state) → PNG bytes, one module per task type
(parity.py, md.py, throughput.py, expansion.py; shared helpers in common.py).

Each function takes plot data shaped as a result record's `series` (the typed shapes beside each
task: `tasks.parity.ParitySeries`, `tasks.md_accuracy.MdSeries`, `tasks.throughput.ThroughputSeries`)
and returns PNG bytes, or None when the data it needs is missing or empty (an older record may
lack a block or key). Data that is there but malformed (paired arrays of different lengths)
raises ValueError, so the report can say which figure it could not draw instead of leaving it out
without a word. Functions named `*_overlay_png` take `{label: series}` and draw every model on
the same axes; those that take `bounds` draw each `(value, label)` as a horizontal line (the
suite's criteria: a bound is never typed in here). `PER_TASK` and `OVERLAY` list the figures of
each task type with the series blocks they read (`FigureSpec.keys`), which the report names in
each caption. No file I/O: the caller decides where the bytes go. docs/report.md describes every figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Sequence

from .common import png, tables  # noqa: F401 (commands/train.py renders its figures with it)
from .expansion import expansion_overlay_png, radial_png
from .md import (recorded_fit_window, adf_overlay_png, aimd_thermo_png, arrhenius_overlay_png, msd_overlay_png,
                 rdf_overlay_png, vdos_overlay_png)
from .parity import (HEXBIN_ABOVE, force_panel_title, energy_parity_png, force_error_by_element_png,  # noqa: F401
                     force_parity_png, per_motif_overlay_png)
from .throughput import scaling_png, speedup_vs_n_overlay_png, throughput_bars_png


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
    series = list(series_by_model.values())
    if not series:
        return []
    out = []
    if task_type == "md_accuracy":
        for key, what in (("adf", "bond-angle distributions (ADF)"), ("vdos", "vibrational densities of states")):
            if not any(s.get(key) for s in series):
                out.append(f"{what}: not recorded by the md_accuracy task (no series '{key}'), so not compared")
        msd = [sp for s in series for run in (s.get("msd") or {}).values() for sp in run.values()]
        if msd and not any(recorded_fit_window(sp.get("fit_window_ps")) for sp in msd):
            out.append("MSD fit window: not recorded in the series (msd.<run>.<species>.fit_window_ps), so the "
                       "MSD figure cannot mark it; the window is stated in the metric reasons")
    if task_type == "parity":
        forces = [tables(s["forces"]) for s in series if s.get("forces") is not None]
        if forces and not any(d.get("motif") is not None for f in forces for d in f.values()):
            out.append("force parity by motif: the parity series labels no force component with its motif "
                       "(forces.<element>.motif), so parity is drawn per element; per-motif RMSE is shown as bars")
    return out
