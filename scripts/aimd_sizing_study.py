#!/usr/bin/env python3
"""Size and length of the AIMD reference runs from NEP MD (issue 26; src/nepbench/aimd_sizing/).

For each candidate AIMD run (a-Li3Si at 1200 K and 1500 K, a-LiC at 1200 K) and each cell size,
NEP MD with the default model (NPT density, melt–quench, ≥ 20 ps equilibration, long NVT
production) measures at which size every pair's g(r) halves agree within the suite's RDF bound and
at which production length the Li MSD has a diffusive window with D's block stderr ≤ 30 %; the
CP2K cost model prices each option. Productions are cached (--cache-dir), so a rerun only analyses.

    nice -n 19 .venv/bin/python scripts/aimd_sizing_study.py \\
        [--out reference_data/studies/aimd_sizing.json] [--markdown tables.md]
    .venv/bin/python scripts/aimd_sizing_study.py --dry-run      # planned NEP atom·steps only

Writes the JSON record atomically and prints (or writes) the markdown tables docs/aimd_sizing.md
quotes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from nepbench import aimd_sizing as sz
from nepbench.files import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
#: Which committed AIMD run's measured s/step prices each case (1500 K: the same cell as 1200 K).
COST_SOURCE = {"a-Li3Si-1200K": "a-Li3Si-1200K", "a-Li3Si-1500K": "a-Li3Si-1200K", "a-LiC-1200K": "a-LiC-1200K"}
#: The CP2K tuning study's record and the MD cases in it that measure the
#: size exponent (a-Li2Si at 33 and 63 atoms) and the speed-up (the Li24Si8 AIMD cell at 1200 K).
TUNING_JSON = ROOT / "reference_data/studies/cp2k_tuning.json"
TUNING_CASES = ("md:a-Li2Si-32", "md:a-Li2Si-64", "md:Li24Si8-1200K")


def cost_exponents(result: dict) -> tuple[float, ...]:
    """The measured size exponent(s) of the tuning record (rounded to 0.01), then 2 and 3."""
    measured = sorted({round(p, 2) for p in result.get("cp2k_tuning_evidence", {}).get("size_exponents", {}).values()})
    return (*measured, *(p for p in (1.0, 2.0, 3.0) if p not in measured and (p > 1.0 or not measured)))


def add_tuning_evidence(result: dict) -> None:
    """Record what the CP2K tuning study measured so far (size exponent, speed-ups), if it exists."""
    if TUNING_JSON.exists():
        try:
            result["cp2k_tuning_evidence"] = {
                "source": str(TUNING_JSON.relative_to(ROOT)),
                **sz.tuning_evidence(json.loads(TUNING_JSON.read_text()), *TUNING_CASES)}
        except (KeyError, ValueError) as exc:
            result["cp2k_tuning_evidence"] = {"source": str(TUNING_JSON.relative_to(ROOT)), "error": str(exc)}


def _nan(values: list) -> np.ndarray:
    """JSON's nulls (the record's NaNs) as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _by_size(case_record: dict) -> list[dict]:
    """A case's per-size records, smallest cell first (JSON keys are sorted as text)."""
    return [v for _, v in sorted(case_record["sizes"].items(), key=lambda kv: int(kv[0]))]


def _fmt(value: float | None, spec: str = ".0f", none: str = "—") -> str:
    return none if value is None else format(value, spec)


def markdown(result: dict, speedup: float) -> str:
    """The tables of docs/aimd_sizing.md from a study record (hours today and ÷ `speedup`)."""
    t = result["targets"]
    lines = [f"NEP MD: {result['model']['name']} (sha256 {result['model']['sha256'][:12]}…), "
             f"{result['nep_md_cpu_s'] / 60:.1f} CPU min in all.", ""]
    for cid, c in result["cases"].items():
        case = c["case"]
        d = c["density"]
        lines += [f"### {cid}", "",
                  f"Density (NEP NPT, {d['n_atoms']} atoms, {case['npt_ps']:g} ps at {case['temperature_k']:.0f} K, "
                  f"second half): **{d['density_g_cm3']:.3f} ± {d['stderr_g_cm3']:.3f} g/cm³** "
                  f"(builder packing {d['builder_density_g_cm3']:.3f}).", "",
                  f"g(r) halves: largest L1 over pairs, median over the disjoint windows of each length "
                  f"(pass fraction at ≤ {t['rdf_l1_bound']:g}; limiting pair)", ""]
        lengths = sorted({float(k) for s in c["sizes"].values() for k in s["rdf_pass_fraction"]})
        lines.append("| N | formula | r_max Å | " + " | ".join(f"{x:g} ps" for x in lengths) + " |")
        lines.append("|---|---|---|" + "---|" * len(lengths))
        for s in _by_size(c):
            cells = []
            for x in lengths:
                k = str(x)
                if k in s["rdf_pass_fraction"]:
                    cells.append(f"{s['rdf_halves_max_median'][k]:.3f} ({s['rdf_pass_fraction'][k]:.0%}; "
                                 f"{s['rdf_limiting_pair'][k]})")
                else:
                    cells.append("—")
            lines.append(f"| {s['n_atoms']} | {s['formula']} | {s['rdf_r_max_a']:.2f} | " + " | ".join(cells) + " |")
        w0 = t["window_start_min_ps"]
        lines += ["", f"Li diffusion: per length, median over windows of the diffusive-window slope "
                      f"(lags {w0:g}–{w0 + t['diffusive_window_ps']:g} ps) / md_accuracy fit slope / block "
                      f"stderr of D (%), and the fraction of windows passing all three; first columns: the "
                      f"whole production's D (block stderr) and its MSD log-log slope over lag windows (ps)", ""]
        lines.append("| N | D whole run (1e-5 cm²/s) | MSD slopes, whole run | "
                     + " | ".join(f"{x:g} ps" for x in lengths) + " |")
        lines.append("|---|---|---|" + "---|" * len(lengths))
        for s in _by_size(c):
            cells = []
            for x in lengths:
                rows = s["d_windows"].get(str(x))
                if not rows:
                    cells.append("—")
                    continue
                slopes = _nan([r["window_slope"] for r in rows])
                ws = np.nanmedian(slopes) if np.isfinite(slopes).any() else float("nan")
                ts = np.median([r["task_slope"] for r in rows])
                se = np.median([r["rel_stderr"] for r in rows])
                cells.append(f"{'—' if not np.isfinite(ws) else format(ws, '.2f')} / {ts:.2f} / "
                             f"{100 * se:.0f} % ({s['d_pass_fraction'][str(x)]:.0%})")
            dw, dse = s["li_d_whole_production_cm2_per_s"]
            slopes = ", ".join(f"{k}: {v:.2f}" for k, v in s.get("li_msd_loglog_slope_whole_production", {}).items())
            lines.append(f"| {s['n_atoms']} | {1e5 * dw:.2f} ± {1e5 * dse:.2f} | {slopes} | " + " | ".join(cells) + " |")
        if any("adf_vdos_halves" in s for s in c["sizes"].values()):
            lines += ["", "ADF / vDOS halves (md_accuracy's other floors, not targets here): median over windows "
                          "of the largest over species", ""]
            lines.append("| N | " + " | ".join(f"{x:g} ps" for x in lengths) + " |")
            lines.append("|---|" + "---|" * len(lengths))
            for s in _by_size(c):
                av = s.get("adf_vdos_halves", {})
                cells = [f"{np.nanmedian(_nan(av[str(x)]['adf'])):.3f} / {np.nanmedian(_nan(av[str(x)]['vdos'])):.3f}"
                         if str(x) in av else "—" for x in lengths]
                lines.append(f"| {s['n_atoms']} | " + " | ".join(cells) + " |")
        cost = c["cp2k_cost"]
        exps = [f"N^{p:g}" for p in result["cost_exponents"]]
        lines += ["", f"CP2K options (cost {cost['s_per_step']:.1f} s/step at {cost['n_atoms']} atoms, "
                      f"{cost['ranks']} rank(s) [{cost['source']}], × (N/{cost['n_atoms']})^p; hours today / "
                      f"÷{speedup:g} after tuning; warm-up {t['aimd_warmup_ps']:g} ps included)", "",
                  "| N | g(r) needs | D needs | production | " + " | ".join(f"hours {k}" for k in exps)
                  + " | " + " | ".join(f"D-only hours {k}" for k in exps)
                  + " | " + " | ".join(f"g(r)-only hours {k}" for k in exps) + " |",
                  "|---|---|---|---|" + "---|" * (3 * len(exps))]
        for o in c["options"]:
            def h(v: float | None) -> str:
                return "—" if v is None else f"{v:.0f} / {v / speedup:.0f}"

            lines.append(f"| {o['n_atoms']} | {_fmt(o['rdf_length_ps'], 'g', '> measured')} ps | "
                         f"{_fmt(o['d_length_ps'], 'g', '> measured')} ps | {_fmt(o['production_ps'], 'g')} ps | "
                         + " | ".join(h(o["hours"][k]) for k in exps) + " | "
                         + " | ".join(h(o["d_only_hours"][k]) for k in exps) + " | "
                         + " | ".join(h(o.get("rdf_only_hours", {}).get(k)) for k in exps) + " |")
        lines.append("")
    lines += ["### Cheapest runs meeting the targets", "",
              "| case | cost exponent | both targets: N, production, hours today / tuned | D first: N, production, hours "
              "| g(r) alone: N, production, hours |",
              "|---|---|---|---|---|"]
    for cid, c in result["cases"].items():
        for key, rec in c["recommendation"].items():
            def cell(r: dict | None) -> str:
                return ("not met within the lengths measured" if r is None else
                        f"{r['n_atoms']}, {r['production_ps']:g} ps, {r['hours']:.0f} / {r['hours'] / speedup:.0f} h")

            lines.append(f"| {cid} | {key} | {cell(rec['both'])} | {cell(rec['d_first'])} | {cell(rec.get('rdf_only'))} |")
    lines.append("")
    if "aimd_committed_halves" in result:
        lines += ["Committed AIMD runs, halves L1 per pair (md_accuracy's floor):", ""]
        for rid, r in result["aimd_committed_halves"].items():
            if "halves_l1" in r:
                lines.append(f"- {rid} ({r['n_atoms']} atoms, {r['production_ps']:.2f} ps): " + ", ".join(
                    f"{k} {v:.3f}" for k, v in r["halves_l1"].items()))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nep89-lisic")
    parser.add_argument("--out", type=Path, default=ROOT / "reference_data/studies/aimd_sizing.json")
    parser.add_argument("--markdown", type=Path, help="write the tables here (default: print them)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache/nepbench/aimd_sizing")
    parser.add_argument("--suite", type=Path, default=ROOT / "suites/quick.toml", help="source of the RDF bound")
    parser.add_argument("--case", action="append", help="case id to run (repeatable; default all)")
    parser.add_argument("--production-ps", type=float, help="override every case's production (ps)")
    parser.add_argument("--sizes", help="override every case's sizes, comma-separated")
    parser.add_argument("--speedup", type=float, default=1.3,
                        help="CP2K speed-up of the tuned preset over the manifest's cost (1.30x, docs/cp2k_settings.md)")
    parser.add_argument("--dry-run", action="store_true", help="print the planned NEP atom·steps and stop")
    parser.add_argument("--from-json", action="store_true",
                        help="recompute the options and the choice from --out's stored analysis (no MD)")
    args = parser.parse_args(argv)

    cases = [c for c in sz.DEFAULT_CASES if not args.case or c.id in args.case]
    if args.production_ps or args.sizes:
        cases = [dataclasses.replace(c, **({"production_ps": args.production_ps} if args.production_ps else {}),
                                     **({"sizes": tuple(int(s) for s in args.sizes.split(","))} if args.sizes else {}))
                 for c in cases]
    if args.dry_run:
        total = 0
        for c in cases:
            n = sz.planned_atom_steps(c)
            total += n
            print(f"{c.id}: {n / 1e6:.2f} M atom·steps")
        print(f"total {total / 1e6:.2f} M atom·steps")
        return 0
    if args.from_json:
        result = json.loads(args.out.read_text())
        add_tuning_evidence(result)
        result = sz.recompute_choices(result, exponents=cost_exponents(result))
        atomic_write_json(args.out, result)
        text = markdown(result, args.speedup)
        atomic_write_text(args.markdown, text) if args.markdown else print(text)
        return 0
    manifest = json.loads((ROOT / "reference_data/aimd/manifest.json").read_text())
    costs = {c.id: sz.cost_from_manifest(manifest, COST_SOURCE[c.id]) for c in cases}
    targets = sz.targets_from_suite(args.suite)
    result = sz.run_study(cases, args.model, targets, args.cache_dir, costs, speedup=1.0,
                          reference_dir=ROOT / "reference_data", log=lambda m: print(m, file=sys.stderr, flush=True))
    add_tuning_evidence(result)
    result = sz.recompute_choices(result, exponents=cost_exponents(result))
    result["command"] = " ".join(["scripts/aimd_sizing_study.py", *(argv if argv is not None else sys.argv[1:])])
    atomic_write_json(args.out, result)
    text = markdown(result, args.speedup)
    if args.markdown:
        atomic_write_text(args.markdown, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
