"""Reports: run directories → verdicts, figures, results.json, report.md and report.html.

One job per module: `load` (reading and merging run directories), `groups` (records by task
template), `build` (the report dict: verdicts, provenance, matrix, conclusions), `figures` (which
figures, file names, captions), `plots` (drawing), `criteria` (criteria → verdicts), `overview`
(the first screen: claims × models matrix, "can and cannot conclude" box), `text` (numbers and
escaping), `sections` (page pieces both renderers share), `markdown`, `html`, `write` (the files,
atomically).

The pages open with the claims × models matrix and what the run can and cannot conclude
(overview.py), then one section per task template: its claims in detail, its method once, its
figures (each caption naming its data source) and its tasks; docs/report.md describes them.
The report never runs anything: it reads the result records of one or more run directories.

Series (plot data) by task type (optional blocks, drawn where a record holds them, in brackets):
  parity       {"forces": {el: {"ref", "pred", ["motif"]}}, "energy": {"ref", "pred"},
                "per_motif": {motif: {...}}}
  md_accuracy  {"rdf": {run: {"r_a", "pairs": {pair: {"ref", "model"}}}},
                ["adf": {run: {"theta_deg", "triplets": {...}}}], ["vdos": {run: {"freq_thz", "species": {...}}}],
                "msd": {run: {sp: {"time_ps", "ref", "model", ["fit_window_ps"]}}},
                "runs": {run: {"aimd_production_ps", ...}},
                "aimd_thermo": {run: {"time_ps", "temperature_k", "potential_ev_per_atom", "warmup_ps", ...}},
                "arrhenius": {"system", "temperature_k", "d_ref_cm2_per_s", "d_model_cm2_per_s", *_stderr}}
                (one entry per point; `system` groups the points of one composition)
  throughput   {"identical_n": [{"n_atoms", "cp2k_s_per_step", "nep_s_per_step", "ratio", ...}],
                "scaling": {engine: {"n_atoms", "s_per_atom_step"}}, "fits": {engine: {"exponent", "prefactor_s", ...}}}
  expansion    {"shell_thickness_nm", "particle_dv_over_v0", "particle_dv_stderr", "core_dv_over_v0",
                "radial": {thickness_nm: {"r_nm", "li_fraction", "strain"}}}
"""

from .build import build_report
from .criteria import Verdict, exit_code, judge, judge_all, validate_criterion
from .html import render_html
from .markdown import render_markdown
from .text import claim_table_text
from .write import write_report

__all__ = [
    "Verdict", "judge", "judge_all", "exit_code", "validate_criterion",
    "build_report", "write_report", "render_markdown", "render_html", "claim_table_text",
]
