"""`nepbench reference build|verify|show`: the project's CP2K reference set."""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

from .. import reference
from ..checks import unknown_name
from ..errors import InputError
from ..files import exclusive_lock


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("reference", help="build, verify or show the CP2K DFT reference set",
                            description="Build (resumable), verify or show the CP2K reference set.")
    rsub = parser.add_subparsers(dest="reference_command", metavar="ACTION", required=True)

    build = rsub.add_parser("build", help="generate candidates, DIRECT-select, label with CP2K (resumable)")
    build.add_argument("spec", nargs="?", default=str(reference.DEFAULT_ROOT / "spec.toml"))
    build.add_argument("--out", default=None, help="output folder (default: the spec's out_dir beside it, dft)")
    build.add_argument("--limit", type=int, default=None, help="label at most N new items, then stop")
    build.add_argument("--retry-failed", action="store_true", help="retry items whose SCF failed in an earlier build (other crashes are retried anyway)")
    build.add_argument("--ranks", type=int, default=2, help="MPI ranks for CP2K (default 2)")
    build.add_argument("--launcher", default=None, help="MPI launcher, e.g. 'srun' (default mpirun)")
    build.add_argument("--select-only", action="store_true", help="only print the DIRECT selection")
    build.set_defaults(func=_build)

    verify = rsub.add_parser("verify", help="check every file and frame hash against the manifest")
    verify.add_argument("dir", nargs="?", default=str(reference.DEFAULT_ROOT / "dft"))
    verify.set_defaults(func=_verify)

    aimd = rsub.add_parser("aimd", help="grow the CP2K AIMD reference runs by segments (resumable)")
    aimd.add_argument("spec", nargs="?", default=str(reference.DEFAULT_ROOT / "aimd.toml"))
    aimd.add_argument("--run", action="append", default=None, help="only this run id (repeatable)")
    aimd.add_argument("--max-minutes", type=float, default=None, help="stop after about this long")
    aimd.add_argument("--ranks", type=int, default=2, help="MPI ranks for CP2K (default 2)")
    aimd.add_argument("--launcher", default=None, help="MPI launcher, e.g. 'srun' (default mpirun)")
    aimd.add_argument("--manifest-only", action="store_true",
                      help="run no CP2K: rewrite aimd/manifest.json from the spec as it is now "
                           "(after changing a run's warm-up or target)")
    aimd.set_defaults(func=_aimd)

    tune = rsub.add_parser("tune", help="CP2K tuning study: fastest settings that reproduce the labels (resumable)",
                           description="Run the CP2K tuning study (src/nepbench/cp2k_tuning/) and print its "
                                       "table for docs/cp2k_settings.md. Finished (variant, case) pairs are kept.")
    tune.add_argument("--record", default=str(reference.DEFAULT_ROOT / "studies" / "cp2k_tuning.json"))
    tune.add_argument("--variant", action="append", default=None, help="only this variant (repeatable)")
    tune.add_argument("--case", action="append", default=None,
                      help="only this case (repeatable); md:a-Li2Si-N (CP2K's cost against N) only when named")
    tune.add_argument("--table-only", action="store_true", help="run no CP2K: print the table of the record")
    tune.set_defaults(func=_tune)

    compare = rsub.add_parser(
        "compare-presets", help="two CP2K presets on the frames a spec's label cache holds under both",
        description="Compare the labels of two CP2K settings presets on every selected frame of SPEC that "
                    "the label cache holds under both (forces, energy, stress), judged with the tuning "
                    "study's limits; runs no CP2K. Exit 0 when every pair is within them, 1 when not, "
                    "2 when no frame has both labels.")
    compare.add_argument("spec")
    compare.add_argument("--a", required=True, help="reference preset (e.g. label)")
    compare.add_argument("--b", required=True, help="candidate preset (e.g. label-tuned)")
    compare.add_argument("--record", default=None, help="write the comparison (JSON) here")
    compare.set_defaults(func=_compare_presets)

    show = rsub.add_parser("show", help="frame counts per motif and split, CP2K settings and cost")
    show.add_argument("dir", nargs="?", default=str(reference.DEFAULT_ROOT / "dft"))
    show.set_defaults(func=_show)


def make_cp2k_engine(preset: str, ranks: int, launcher: str | None, spec_name: str = "spec.toml"):
    """The CP2K engine with a spec's settings preset ("label" or "aimd"), ranks and MPI launcher."""
    from ..engines import cp2k

    problem = unknown_name(preset, cp2k.SETTINGS_PRESETS, "CP2K settings preset")
    if problem:
        raise InputError(spec_name, problem)
    kwargs = {"ranks": ranks}
    if launcher:
        kwargs["launcher"] = launcher
    return cp2k.CP2KEngine(cp2k.SETTINGS_PRESETS[preset], **kwargs)


def _tune(args: argparse.Namespace) -> int:
    from .. import cp2k_tuning as tuning

    record_path = Path(args.record)
    try:
        variants = [tuning.variant_by_name(n) for n in args.variant] if args.variant else list(tuning.VARIANTS)
    except KeyError as exc:
        print(f"nepbench reference tune: {exc.args[0]}", file=sys.stderr)
        return 2
    known = tuning.CASES + tuning.SCALING_CASES  # the scaling cases run only when named
    cases = [c for c in known if c.name in args.case] if args.case else list(tuning.CASES)
    unknown = sorted(set(args.case or []) - {c.name for c in known})
    if unknown:
        print(f"nepbench reference tune: unknown case(s) {', '.join(unknown)} "
              f"(known: {', '.join(c.name for c in known)})", file=sys.stderr)
        return 2
    if not args.table_only:
        with exclusive_lock(record_path.parent / f".{record_path.stem}.lock"):
            tuning.run_study(record_path, variants, cases, aimd_root=reference.DEFAULT_ROOT / "aimd")
    record = tuning.load_record(record_path)
    summaries = tuning.summarise(record)
    print(tuning.markdown_table(summaries))
    for cores in (1, 2):
        best = tuning.fastest_accepted(summaries, cores)
        print(f"fastest accepted on {cores} core(s): {best.name} ({best.md_s_per_step:.2f} s/step, "
              f"{best.md_speedup:.2f}× the baseline on as many cores)" if best
              else f"fastest accepted on {cores} core(s): none measured yet")
    best_label = tuning.fastest_accepted_sp(summaries)
    print(f"fastest accepted label preset: {best_label.name} ({best_label.sp_speedup:.2f}× the label preset "
          "on single points)" if best_label else "fastest accepted label preset: none measured yet")
    return 0


def _compare_presets(args: argparse.Namespace) -> int:
    from ..cp2k_tuning import preset_check
    from ..engines import cp2k
    from ..files import atomic_write_json

    for name in (args.a, args.b):
        problem = unknown_name(name, cp2k.SETTINGS_PRESETS, "CP2K settings preset")
        if problem:
            print(f"nepbench reference compare-presets: {problem}", file=sys.stderr)
            return 2
    spec = reference.load_spec(args.spec)
    selection = reference.select_items(spec, reference.recorded_picks(spec.out_path))
    engine = cp2k.CP2KEngine(cp2k.SETTINGS_PRESETS[args.b])
    settings_a, settings_b = (cp2k.SETTINGS_PRESETS[n].to_dict() for n in (args.a, args.b))
    pairs = preset_check.pair_frames(selection.items, spec.out_path / "cache", settings_a, settings_b,
                                     engine.version())
    result = preset_check.summary(pairs)
    if args.record:
        atomic_write_json(Path(args.record), {"spec": str(args.spec), "preset_a": args.a, "preset_b": args.b,
                                              "settings_a": settings_a, "settings_b": settings_b,
                                              "cp2k": engine.version(), **result})
    print(preset_check.markdown_table(pairs))
    if not pairs:
        print(f"compare-presets: no frame of {args.spec} is labelled under both {args.a} and {args.b}")
        return 2
    print(f"compare-presets: {len(pairs)} frames, max ΔF RMS {result['force_rmse_max_mev_per_a']:.2f} meV/Å, "
          f"max |ΔE| {result['energy_diff_max_abs_mev_per_atom']:.3f} meV/atom"
          + (f", max |Δσ| {result['stress_diff_max_gpa']:.3f} GPa" if result["stress_diff_max_gpa"] is not None else "")
          + f", median wall {args.a} ÷ {args.b} {result['median_wall_ratio_a_over_b']:.2f}: "
          + ("within the limits" if result["accepted"] else "; ".join(result["reasons"])))
    return 0 if result["accepted"] else 1


def _build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..engines import cp2k

    spec = reference.load_spec(args.spec)
    out_dir = Path(args.out) if args.out else spec.out_path
    selection = reference.select_items(spec, reference.recorded_picks(out_dir))  # ties go to labelled picks
    print(f"reference: pool {selection.pool_size} candidates, DIRECT kept {len(selection.items)} "
          f"({100 * selection.selected_fraction:.1f}%)")
    preset = cp2k.SETTINGS_PRESETS.get(spec.cp2k_preset)
    narrow = reference.narrow_cells(selection.items)
    if preset is not None and preset.kpoints is None and preset.kpoint_length_a is None:
        print(f"reference: warning: preset {spec.cp2k_preset!r} labels at Γ only, which is not k-point "
              "converged in cells this size (v2 frames of 7–11 Å: 77–395 meV/Å RMS off 2×2×2; "
              "docs/cp2k_settings.md, \"k-point study\")"
              + (f"; {sum(narrow.values())} selected frames are under {reference.GAMMA_ONLY_MIN_WIDTH_A:g} Å wide ("
                 + ", ".join(f"{k} {v}" for k, v in sorted(narrow.items())) + ")" if narrow else ""))
    if spec.selection_version < reference.LATEST_SELECTION_VERSION:
        print(f"reference: note: {args.spec} selects with selection_version {spec.selection_version}, kept so "
              f"the committed set is reproduced; a new set should say selection_version = "
              f"{reference.LATEST_SELECTION_VERSION} (docs/cp2k_settings.md, \"Selection versions\")")
    if args.select_only:
        for key, fam in selection.per_family.items():
            print(f"  {key:32s} pool {fam['pool']:4d}  selected {fam['selected']:3d}")
        return 0
    engine = make_cp2k_engine(spec.cp2k_preset, args.ranks, args.launcher, args.spec)
    engine_info = {"settings": engine.settings.to_dict(), "version": engine.version(),
                   "input_template_sha256": reference.input_template_sha256(engine.settings)}
    cache_dir = out_dir / "cache"
    bar = tqdm(total=len(selection.items), desc="CP2K labels", unit="frame")
    done = {"n": 0}

    def progress(i: int, n: int) -> None:
        bar.update(i - done["n"])
        done["n"] = i
        if i % 5 == 0:  # keep the assembled set and manifest current while the build runs
            reference.assemble(selection.items, engine_info, cache_dir, out_dir, spec, selection)

    try:
        report = reference.label_items(selection.items, engine, cache_dir, args.retry_failed,
                                       progress, args.limit)
    finally:
        bar.close()
        manifest = reference.assemble(selection.items, engine_info, cache_dir, out_dir, spec, selection)
    busy = f", {report.skipped_busy} being labelled by another build" if report.skipped_busy else ""
    earlier = (f", {report.skipped_failed} left out (SCF failed in an earlier build; --retry-failed)"
               if report.skipped_failed else "")
    print(f"reference: labelled {report.labelled}, cached {report.skipped_cached}, "
          f"failed {report.failed}{earlier}{busy} in {report.wall_s:.0f} s; set has {manifest['n_frames']} frames")
    for line in report.failures:
        print(f"  failed: {line}")
    return 0


def graceful_stop() -> threading.Event:
    """Make SIGTERM ask for a stop after the running AIMD segment; a second SIGTERM interrupts it.

    The first signal sets the returned event (the grower commits the segment under way, then
    exits). The second raises KeyboardInterrupt, which kills the CP2K run and drops that segment;
    the committed ones stay intact.
    """
    event = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        print("aimd: stop requested; finishing the running segment (signal again to abandon it)",
              file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, handler)
    return event


def check_committed_runs(spec: Any) -> None:
    """Before the AIMD manifest is rewritten: the spec defines runs, and every started run's committed
    state, energies and frames read back (`read_md_run`). Else InputError naming the file or folder,
    and the manifest is left as it was: it records the files' sha256, so rewriting it over damaged
    data would make `reference verify` vouch for them."""
    from .. import aimd
    from ..engines.cp2k import read_md_run

    if not spec.runs:
        raise InputError(spec.path, "defines no [[run]]: refusing to rewrite aimd/manifest.json, which would "
                                    "drop every committed run")
    for run in spec.runs:
        folder = aimd.run_dir_of(spec, run)
        if not (folder / "state.json").is_file():
            continue
        try:
            read_md_run(folder)
        except InputError:
            raise
        except Exception as exc:  # a damaged file can fail in the JSON, lzma or extxyz reader alike
            raise InputError(folder, f"committed AIMD data do not read back ({type(exc).__name__}: {exc}); "
                                     "restore them from git before rewriting the manifest") from None


def _aimd(args: argparse.Namespace) -> int:
    from .. import aimd

    spec = aimd.load_aimd_spec(args.spec)
    if args.manifest_only:
        check_committed_runs(spec)
        with exclusive_lock(Path(spec.path).parent / "aimd" / ".manifest.lock"):
            runs = aimd.write_manifest(spec)["runs"]
        print(f"aimd: manifest rewritten for {', '.join(runs) or 'no started runs'}")
        return 0
    engines: dict[str, Any] = {}

    def engine(run):  # each run's own settings preset (aimd.toml `settings`, per run or for all)
        preset = spec.preset_of(run)
        if preset not in engines:
            engines[preset] = make_cp2k_engine(preset, args.ranks, args.launcher, args.spec)
        return engines[preset]

    def show(run, result) -> None:
        print(f"  {run.id:20s} step {result.total_steps:6d}/{run.target_steps}  "
              f"{result.s_per_step:6.1f} s/step", flush=True)

    stop = graceful_stop()
    done = aimd.grow(spec, engine, args.run, None if args.max_minutes is None else 60 * args.max_minutes, show,
                     stop_requested=stop.is_set)
    for run_id, steps in done.items():
        print(f"aimd {run_id}: {steps} steps committed")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .. import aimd

    result = reference.verify(args.dir)
    aimd_spec = Path(args.dir).parent / "aimd.toml"
    aimd_problems = aimd.verify_aimd(aimd.load_aimd_spec(aimd_spec)) if aimd_spec.is_file() else []
    result.problems.extend(aimd_problems)
    result.ok = result.ok and not aimd_problems
    for problem in result.problems:
        print(f"FAIL {problem}")
    print(f"reference verify: {result.n_frames} frames in {result.n_files} files: "
          f"{'ok' if result.ok else 'FAILED'}")
    return 0 if result.ok else 1


def _show(args: argparse.Namespace) -> int:
    path = Path(args.dir) / "manifest.json"
    if not path.is_file():
        raise InputError(path, "manifest not found (run `nepbench reference build` first)")
    lines = _lines_of(path, reference.load_manifest(path), dft_lines)
    aimd_manifest = Path(args.dir).parent / "aimd" / "manifest.json"
    if aimd_manifest.is_file():
        from ..aimd import load_aimd_manifest

        lines += _lines_of(aimd_manifest, load_aimd_manifest(aimd_manifest),
                           lambda m: aimd_table(m) + aimd_trend_lines(m))
    print("\n".join(lines))  # all or nothing: a damaged manifest prints no half table
    return 0


def _lines_of(path: Path, manifest: dict, render: Any) -> list[str]:
    """`render(manifest)`, or InputError naming `path` when a field it reads is missing or mistyped."""
    try:
        return render(manifest)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(path, f"a field `reference show` reads is missing or of another type "
                               f"({type(exc).__name__}: {exc})") from None


def kpoint_sampling(settings: dict) -> str:
    """How recorded CP2K settings (`CP2KSettings.to_dict()`) sample k-space, in a few words."""
    if settings.get("kpoints"):
        return "k-points " + "×".join(str(n) for n in settings["kpoints"])
    if settings.get("kpoint_length_a"):
        return f"k-points ⌈{settings['kpoint_length_a']:g} Å / cell width⌉ per axis"
    return "Γ point only"


def dft_lines(manifest: dict) -> list[str]:
    """What `reference show` prints about a DFT manifest: name, frames, CP2K, per-file counts, DIRECT."""
    cp2k = manifest.get("cp2k") if isinstance(manifest.get("cp2k"), dict) else {}
    wall = manifest.get("total_cp2k_wall_s")
    sampling = f"{kpoint_sampling(cp2k['settings'])}, " if isinstance(cp2k.get("settings"), dict) else ""
    lines = [f"{manifest.get('name', '?')}: {manifest.get('n_frames', '?')} frames, "
             f"{cp2k.get('version', 'CP2K version not recorded')}, {sampling}"
             f"{f'{wall:.0f}' if isinstance(wall, (int, float)) else '?'} s of CP2K",
             f"{'file':28s} {'frames':>6s} {'test':>5s}  DFT force RMS, eV/Å: median [min–max]"]
    for name, entry in manifest["files"].items():
        rms = sorted(f["force_rms_ev_per_a"] for f in entry["frames"] if f.get("force_rms_ev_per_a") is not None)
        spread = f"  {statistics.median(rms):.2f} [{rms[0]:.2f}–{rms[-1]:.2f}]" if rms else "  – (not recorded)"
        lines.append(f"{name:28s} {len(entry['frames']):6d} "
                     f"{sum(f.get('split') == 'test' for f in entry['frames']):5d}{spread}")
    sel = manifest.get("selection")
    if sel:
        lines.append(f"DIRECT: kept {sel['selected']} of {sel['pool_size']} ({100 * sel['selected_fraction']:.1f}%)")
        left = labelling_left(manifest)
        if left:
            lines.append(left)
    return lines


def labelling_left(manifest: dict) -> str | None:
    """How far the labelling of a DFT manifest's selection has got and what the rest would cost.

    Frames to go = selected − labelled (`n_frames`) − failed; their cost is that many times the
    median recorded `wall_s` of the labelled frames (one CP2K job each, at the ranks and load they
    ran with), in hours; left out when no frame records one. None when the manifest records no
    selection count or frame count, or when nothing is left.
    """
    selected = (manifest.get("selection") or {}).get("selected")
    labelled = manifest.get("n_frames")
    if not (isinstance(selected, int) and isinstance(labelled, int)):
        return None
    n_failed = len(manifest.get("failed", []))
    left = selected - labelled - n_failed
    if left <= 0:
        return None
    line = f"labelled {labelled} of {selected}" + (f", {n_failed} failed" if n_failed else "") + f": {left} to go"
    walls = [f["wall_s"] for entry in manifest["files"].values() for f in entry["frames"]
             if isinstance(f.get("wall_s"), (int, float))]
    if walls:
        median = statistics.median(walls)
        line += f", about {left * median / 3600:.1f} h of CP2K at the median label's {median:.0f} s"
    return line


def aimd_table(manifest: dict) -> list[str]:
    """Lines describing each AIMD run of an aimd/manifest.json: length, production, cost, drift.

    "left h" is the CP2K time still needed to reach the run's target at its measured cost per step
    with each segment's restart (`s_per_step_with_restarts`; the median s/step, which leaves the
    segments' first steps out, for manifests without it); "drift" is the conserved quantity's
    after the warm-up;
    "T K" is the run's thermostat target / its mean temperature after the warm-up ± the standard error
    of that mean over its correlated steps ("—" before then);
    "warm-up/eq." is the warm-up in steps / the step from which the potential energy is detected to be
    stationary (metrics/equilibration.py; "—" while the run is too short to tell).
    """
    lines = [f"AIMD ({manifest.get('spec', 'aimd.toml')})",
             f"{'run':16s} {'atoms':>5s} {'steps':>10s} {'dt fs':>5s} {'T K':>13s} {'warm-up/eq.':>11s} {'ps':>6s} {'prod ps':>7s} "
             f"{'CP2K h':>6s} {'left h':>6s} {'s/step':>6s} {'SCF/step':>8s} {'ranks':>5s} {'drift meV/atom/ps':>17s}"]
    for run_id, run in manifest["runs"].items():
        drift = run.get("conserved_drift_mev_per_atom_per_ps_after_warmup")
        scf = run.get("scf_iterations_per_step")
        left_h = max(0, run["target_steps"] - run["total_steps"]) * (
            run.get("s_per_step_with_restarts") or run["s_per_step_median"]) / 3600
        t_mean, t_err = run.get("temperature_mean_k_after_warmup"), run.get("temperature_stderr_k_after_warmup")
        temps = (f"{run['protocol']['temperature_k']:.0f}/{'—' if t_mean is None else f'{t_mean:.0f}'}"
                 f"{'' if t_mean is None or t_err is None else f'±{t_err:.0f}'}")
        eq_step = run.get("potential_energy_equilibrated_at_step")
        warm = f"{run['protocol']['warmup_steps']}/{'—' if eq_step is None else eq_step}"
        lines.append(
            f"{run_id:16s} {run['n_atoms']:5d} {run['total_steps']:>5d}/{run['target_steps']:<4d} "
            f"{run['protocol']['timestep_fs']:5g} {temps:>13s} {warm:>11s} {run['length_ps']:6.3f} {run['production_ps']:7.3f} "
            f"{run['total_wall_s'] / 3600:6.2f} {left_h:6.2f} {run['s_per_step_median']:6.1f} "
            f"{'—' if scf is None else f'{scf:.1f}':>8s} {run['ranks']:5d} "
            f"{'—' if drift is None else f'{drift:.2f}':>17s}")
    return lines


def aimd_trend_lines(manifest: dict) -> list[str]:
    """One line per AIMD run whose manifest holds a potential-energy trend after the warm-up: the
    slope ± its standard error (meV/atom/ps), how many errors from 0, and the temperature offset
    the heat it releases holds the CSVR thermostat at (`metrics.equilibration.csvr_heat_offset_k`)."""
    rows = [(run_id, run) for run_id, run in manifest["runs"].items()
            if run.get("potential_trend_mev_per_atom_per_ps_after_warmup") is not None]
    if not rows:
        return []
    lines = ["potential energy after the warm-up (a structure still relaxing releases heat, which holds the "
             "thermostat above its target):"]
    for run_id, run in rows:
        slope = run["potential_trend_mev_per_atom_per_ps_after_warmup"]
        err = run["potential_trend_stderr_mev_per_atom_per_ps_after_warmup"]
        sigmas = f"{abs(slope) / err:.1f} σ" if err else "exact"
        lines.append(f"  {run_id:16s} {slope:+.1f} ± {err:.1f} meV/atom/ps ({sigmas}); "
                     f"its heat holds T {run['thermostat_heat_offset_k']:+.0f} K off target")
    return lines
