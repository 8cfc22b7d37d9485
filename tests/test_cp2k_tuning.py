"""The CP2K tuning study: acceptance rule, speed-up bookkeeping, resumable records, real CP2K levers."""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import shutil

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write as ase_write

from nepbench import cp2k_tuning as tuning
from nepbench.engines import cp2k as cp2k_mod
from nepbench.engines.cp2k import LABEL_SETTINGS, CP2KEngine, build_input
from nepbench.errors import EngineCrashed

from cp2k_fakes import FakeCP2K

HAVE_CP2K = shutil.which("cp2k.psmp") is not None and shutil.which("mpirun") is not None


def _sp(case: str, rmse: float = 1.0, de: float = 0.1, wall: float = 10.0, error: str | None = None) -> dict:
    entry = {"variant": "v", "case": case, "kind": "sp", "force_rmse_mev_per_a": rmse,
             "energy_diff_mev_per_atom": de, "wall_s": wall, "cpu_s": wall, "scf_iterations": 10}
    if error:
        entry["error"] = error
    return entry


def _md(s_per_step: float, drift: float = 0.0, se: float = 0.1, variant: str = "v") -> dict:
    return {"variant": variant, "case": "md:x", "kind": "md", "s_per_step": s_per_step,
            "scf_iterations_per_step": 7.0, "drift_mev_per_atom_ps": drift, "drift_se_mev_per_atom_ps": se}


# --------------------------------------------------------------------------------------------
# Pure metrics and the acceptance rule
# --------------------------------------------------------------------------------------------


def test_force_agreement_in_mev_per_angstrom() -> None:
    ref = np.zeros((2, 3))
    forces = np.array([[0.003, 0.0, 0.0], [0.0, -0.004, 0.0]])
    rmse, fmax = tuning.force_agreement(forces, ref)
    assert rmse == pytest.approx(np.sqrt((9 + 16) / 6), rel=1e-12)
    assert fmax == pytest.approx(4.0)
    with pytest.raises(ValueError):
        tuning.force_agreement(np.zeros((3, 3)), ref)


def test_energy_difference_and_drift() -> None:
    assert tuning.energy_difference_mev_per_atom(-10.0, -10.032, 32) == pytest.approx(1.0)
    t = np.linspace(0.0, 0.02, 11)
    rng = np.random.default_rng(0)
    slope, se = tuning.drift_mev_per_atom_ps(t, -100.0 + 0.32 * t + rng.normal(0, 1e-5, t.size), 32)
    assert slope == pytest.approx(10.0, abs=5 * se) and 0 < se < 2.0
    with pytest.raises(ValueError):
        tuning.drift_mev_per_atom_ps(t[:2], t[:2], 32)


def test_accept_limits_on_forces_energies_errors_and_drift() -> None:
    base_md = _md(30.0, drift=1.0, se=0.5, variant="baseline")
    ok = tuning.accept([_sp("a", 4.9, 0.49), _md(15.0, drift=2.0, se=0.5)], base_md, n_cases=2)
    assert ok.accepted and ok.complete and not ok.reasons
    forces = tuning.accept([_sp("a", 5.1, 0.1)], base_md, n_cases=2)
    assert not forces.accepted and "force RMSE 5.10" in forces.reasons[0] and not forces.complete
    energy = tuning.accept([_sp("a", 1.0, -0.6)], base_md, n_cases=1)
    assert not energy.accepted and "|ΔE| 0.600" in energy.reasons[0]
    # bound = |1.0| + 2*hypot(0.5, 0.5) = 2.414
    drift = tuning.accept([_md(10.0, drift=2.5, se=0.5)], base_md, n_cases=1)
    assert not drift.accepted and "drift +2.50" in drift.reasons[0]
    crashed = tuning.accept([_sp("a", error="cp2k exited with code 1")], base_md, n_cases=1)
    assert not crashed.accepted and "CP2K failed" in crashed.reasons[0]
    assert not tuning.accept([], base_md, n_cases=1).accepted


def test_stress_difference_in_gpa_and_its_limit() -> None:
    ref = np.zeros(6)
    stress = np.array([0.0, 0.0, 0.0, 0.0, -0.5e-3, 0.2e-3])  # eV/Å³
    assert tuning.stress_difference_gpa(stress, ref) == pytest.approx(0.5e-3 * 160.21766208)
    with pytest.raises(ValueError):
        tuning.stress_difference_gpa(np.zeros(6), np.zeros((3, 3)))
    ok = tuning.accept([{**_sp("a"), "stress_diff_max_gpa": 0.09}], None, n_cases=1)
    assert ok.accepted
    bad = tuning.accept([{**_sp("a"), "stress_diff_max_gpa": 0.12}], None, n_cases=1)
    assert not bad.accepted and "max |Δσ| 0.120 GPa > 0.1" in bad.reasons[0]


def test_label_variants_run_single_points_against_their_own_baseline() -> None:
    label = tuning.variant_by_name("label-e9-r40-elpa")
    settings = label.settings()
    assert label.sp_only and settings.stress and settings.eps_scf == LABEL_SETTINGS.eps_scf
    assert settings.eps_default == 1e-9 and settings.diag_library == "ELPA"
    assert not tuning.variant_by_name("e9-r40").sp_only
    variants = (tuning.TuningVariant("baseline"),
                tuning.TuningVariant("label-baseline", preset="label", baseline="label-baseline"),
                tuning.TuningVariant("label-fast", {"eps_default": 1e-9}, preset="label", baseline="label-baseline"),
                tuning.TuningVariant("label-bent", {"eps_default": 1e-8}, preset="label", baseline="label-baseline"))
    cases = (tuning.TuningCase("sp:a", "sp"), tuning.TuningCase("md:x", "md"))
    results = {"baseline|sp:a": {**_sp("sp:a", 0.1, 0.0, 100.0), "variant": "baseline"},
               "baseline|md:x": _md(30.0, variant="baseline")}
    for name, wall, dsigma in (("label-baseline", 200.0, 0.0), ("label-fast", 50.0, 0.02), ("label-bent", 25.0, 0.3)):
        results[f"{name}|sp:a"] = {**_sp("sp:a", 0.5, 0.0, wall), "variant": name, "stress_diff_max_gpa": dsigma}
    by = {s.name: s for s in tuning.summarise({"results": results}, variants, cases)}
    # against the label preset's 200 s, not the AIMD baseline's 100 s; complete without an MD case
    assert by["label-fast"].sp_speedup == pytest.approx(4.0) and by["label-fast"].verdict.complete
    assert by["label-fast"].stress_max_gpa == pytest.approx(0.02) and by["label-fast"].md_s_per_step is None
    assert not by["label-bent"].verdict.accepted
    assert tuning.fastest_accepted_sp(list(by.values()), variants=variants).name == "label-fast"
    assert "| 0.020 |" in tuning.markdown_table(list(by.values()))


def test_summaries_pick_the_fastest_accepted_variant() -> None:
    variants = (tuning.TuningVariant("baseline"), tuning.TuningVariant("fast"), tuning.TuningVariant("faster"),
                tuning.TuningVariant("wrong"))
    cases = (tuning.TuningCase("sp:a", "sp"), tuning.TuningCase("md:x", "md"))
    results = {}
    for name, wall, md_s, rmse in (("baseline", 40.0, 30.0, 0.1), ("fast", 20.0, 15.0, 1.0),
                                   ("faster", 10.0, 10.0, 9.0), ("wrong", 30.0, 12.0, 2.0)):
        results[f"{name}|sp:a"] = {**_sp("sp:a", rmse, 0.0, wall), "variant": name}
        results[f"{name}|md:x"] = _md(md_s, variant=name)
    results["wrong|md:x"]["drift_mev_per_atom_ps"] = 50.0
    summaries = tuning.summarise({"results": results}, variants, cases)
    by = {s.name: s for s in summaries}
    assert by["fast"].md_speedup == pytest.approx(2.0) and by["fast"].sp_speedup == pytest.approx(2.0)
    assert not by["faster"].verdict.accepted and not by["wrong"].verdict.accepted
    assert tuning.fastest_accepted(summaries).name == "fast"
    table = tuning.markdown_table(summaries)
    assert "| fast |" in table and "2.00×" in table and "rejected: sp:a: force RMSE 9.00" in table


def test_timing_report_reads_cp2k_layout() -> None:
    text = """
 -------------------------------------------------------------------------------
 -                                                                             -
 -                                T I M I N G                                  -
 -                                                                             -
 -------------------------------------------------------------------------------
 SUBROUTINE                       CALLS  ASD         SELF TIME        TOTAL TIME
                                MAXIMUM       AVERAGE  MAXIMUM  AVERAGE  MAXIMUM
 CP2K                                 1  1.0    0.011    0.012   49.790   49.791
 qs_forces                            1  2.0    0.000    0.000   49.100   49.110
 grid_collocate_task_list            26  7.0   20.100   20.500   20.100   20.500
 grid_integrate_task_list            24  7.0   18.200   18.900   18.200   18.900
 -------------------------------------------------------------------------------
"""
    rows = tuning.timing_report(text, top=2)
    assert [r["routine"] for r in rows] == ["grid_collocate_task_list", "grid_integrate_task_list"]
    assert rows[0] == {"routine": "grid_collocate_task_list", "calls": 26, "self_s": 20.5, "total_s": 20.5}
    assert tuning.timing_report("no report") == []


def test_every_variant_is_a_valid_setting_that_keeps_the_level_of_theory() -> None:
    base = tuning.AIMD_V1_SETTINGS
    names = [v.name for v in tuning.VARIANTS]
    assert names[0] == "baseline" and len(set(names)) == len(names)
    for variant in tuning.VARIANTS:
        settings = variant.settings()
        assert settings.xc == base.xc and settings.electronic_temperature_k == base.electronic_temperature_k
        assert settings.potentials == base.potentials and "MOLOPT" in settings.basis_set
    with pytest.raises(KeyError, match="known: baseline"):
        tuning.variant_by_name("nope")


def test_new_levers_are_written_and_left_out_of_records_at_default() -> None:
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=[5.4] * 3, pbc=True)
    plain = build_input(atoms, LABEL_SETTINGS)
    assert "NGRIDS" not in plain and "EPS_PGF_ORB" not in plain and "PREFERRED_DIAG_LIBRARY" not in plain
    assert "ngrids" not in LABEL_SETTINGS.to_dict() and "mixing_method" not in LABEL_SETTINGS.to_dict()
    tuned = dataclasses.replace(LABEL_SETTINGS, ngrids=3, eps_pgf_orb=1e-6, diag_library="ELPA",
                                mixing_method="PULAY_MIXING")
    text = build_input(atoms, tuned)
    assert "NGRIDS 3" in text and "EPS_PGF_ORB 1.000E-06" in text and "PREFERRED_DIAG_LIBRARY ELPA" in text
    assert "METHOD PULAY_MIXING" in text and "NBUFFER 8" in text and "NBROYDEN" not in text
    assert cp2k_mod.CP2KSettings.from_dict(json.loads(json.dumps(tuned.to_dict()))) == tuned
    with pytest.raises(ValueError):
        dataclasses.replace(LABEL_SETTINGS, diag_library="LAPACK")


# --------------------------------------------------------------------------------------------
# The study loop: resumable, goes on past a rejected setting (fake CP2K)
# --------------------------------------------------------------------------------------------


def _aimd_root(tmp_path, atoms: Atoms):
    run = tmp_path / "aimd" / "r"
    run.mkdir(parents=True)
    buf = io.StringIO()
    ase_write(buf, [atoms, atoms], format="extxyz")
    (run / "frames.extxyz.xz").write_bytes(lzma.compress(buf.getvalue().encode()))
    return tmp_path / "aimd"


def test_study_records_rejected_variant_goes_on_and_resumes(tmp_path, monkeypatch) -> None:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    fake = FakeCP2K()
    calls: list[str] = []

    def execute(self, directory, text):
        calls.append(self.settings.basis_set)
        if self.settings.basis_set == "BROKEN-MOLOPT":
            raise EngineCrashed("cp2k: basis set BROKEN-MOLOPT not found (fake)")
        return fake(directory, text)

    monkeypatch.setattr(CP2KEngine, "_execute", execute)
    monkeypatch.setattr(CP2KEngine, "version", lambda self: "CP2K version fake")
    variants = (tuning.TuningVariant("baseline"), tuning.TuningVariant("broken", {"basis_set": "BROKEN-MOLOPT"}),
                tuning.TuningVariant("invalid", {"ngrids": 99}), tuning.TuningVariant("e8", {"eps_default": 1e-8}),
                tuning.TuningVariant("label-x", preset="label"))  # single points only: no MD entry
    case = tuning.TuningCase("md:x", "md", aimd_run="r", warmup_steps=2, timed_steps=3)
    record_path = tmp_path / "study.json"
    lines: list[str] = []
    record = tuning.run_study(record_path, variants, [case], aimd_root=_aimd_root(tmp_path, atoms), log=lines.append)
    assert set(record["results"]) == {"baseline|md:x", "broken|md:x", "e8|md:x"}
    assert "BROKEN-MOLOPT not found" in record["results"]["broken|md:x"]["error"]
    assert any("invalid setting" in line for line in lines)
    base = record["results"]["baseline|md:x"]
    assert base["s_per_step"] == pytest.approx(2.0) and len(base["s_per_step_each"]) == 3
    assert base["drift_mev_per_atom_ps"] == pytest.approx(0.0, abs=1e-6)
    assert json.loads(record_path.read_text()) == record
    # a second run recomputes nothing finished and retries the failed pair only
    calls.clear()
    tuning.run_study(record_path, variants, [case], aimd_root=tmp_path / "aimd", log=lines.append)
    assert calls == ["BROKEN-MOLOPT"]


def test_unreadable_record_names_the_file(tmp_path) -> None:
    path = tmp_path / "study.json"
    path.write_text("{not json")
    with pytest.raises(Exception, match="study.json"):
        tuning.load_record(path)


# --------------------------------------------------------------------------------------------
# Real CP2K: the levers run, and the study compares against a label
# --------------------------------------------------------------------------------------------


@pytest.mark.cp2k
@pytest.mark.skipif(not HAVE_CP2K, reason="cp2k.psmp/mpirun not installed (apt-get install cp2k)")
def test_real_study_on_si8_label(tmp_path) -> None:
    base = dataclasses.replace(cp2k_mod.AIMD_V1_SETTINGS, cutoff_ry=200.0, rel_cutoff_ry=40.0,
                               electronic_temperature_k=300.0, eps_scf=1e-7, stress=True)
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.08, seed=3)
    label = CP2KEngine(dataclasses.replace(base, eps_default=1e-12), ranks=1, timeout_s=300).single_point(atoms)
    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=label.energy_ev, forces=label.forces_ev_per_a,
                                       stress=label.stress_ev_per_a3)
    frame.info["frame_sha256"] = "feedbeef" * 8
    variants = (tuning.TuningVariant("baseline", ranks=1),
                tuning.TuningVariant("levers", {"ngrids": 3, "diag_library": "ELPA", "mixing_method": "PULAY_MIXING",
                                                "eps_default": 1e-8}, ranks=1),
                tuning.TuningVariant("rejected", {"basis_set": "NO-SUCH-MOLOPT-BASIS"}, ranks=1))
    case = tuning.TuningCase("sp:si8", "sp", frame_sha256="feedbeef")
    record = tuning.run_study(tmp_path / "s.json", variants, [case], frames=[frame], base=base, log=lambda s: None)
    baseline, levers = record["results"]["baseline|sp:si8"], record["results"]["levers|sp:si8"]
    assert baseline["force_rmse_mev_per_a"] < 1.0 and abs(baseline["energy_diff_mev_per_atom"]) < 0.1
    assert baseline["stress_diff_max_gpa"] < 0.01 and levers["stress_diff_max_gpa"] < 0.1
    assert levers["force_rmse_mev_per_a"] < 5.0 and abs(levers["energy_diff_mev_per_atom"]) < 0.5
    assert baseline["timing_top"] and baseline["timing_top"][0]["self_s"] > 0
    assert baseline["scf_iterations"] > 3 and baseline["s_per_scf_iteration"] > 0
    assert "error" in record["results"]["rejected|sp:si8"]


def test_cpu_equivalent_removes_time_lost_to_other_work() -> None:
    # a 1-core run that got half its core: 20 s of wall per step were 10 s of work
    assert tuning.cpu_equivalent(20.0, cpu_s=50.0, total_wall_s=100.0, cores=1) == pytest.approx(10.0)
    # never more than the wall time (MPI polling can make CPU exceed wall × cores)
    assert tuning.cpu_equivalent(20.0, cpu_s=260.0, total_wall_s=100.0, cores=2) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        tuning.cpu_equivalent(1.0, 1.0, 0.0, 1)
    assert tuning.md_cost_s({"s_per_step": 9.0}) == 9.0
    assert tuning.md_cost_s({"s_per_step": 9.0, "s_per_step_cpu_equivalent": 6.0}) == 6.0


# --------------------------------------------------------------------------------------------
# Two presets on the frames of one set (the label cache holds both)
# --------------------------------------------------------------------------------------------


class _PresetEngine:
    """Labels from positions; preset B is preset A shifted by known amounts."""

    def __init__(self, settings, shift_f: float = 0.0, shift_e: float = 0.0, shift_s: float = 0.0):
        self.settings, self.shift_f, self.shift_e, self.shift_s = settings, shift_f, shift_e, shift_s

    def version(self) -> str:
        return "CP2K version fake"

    def single_point(self, atoms):
        from nepbench.engines.base import Labels

        pos = atoms.positions
        return Labels(energy_ev=float(-np.sum(np.cos(pos))) + self.shift_e,
                      forces_ev_per_a=-np.sin(pos) + self.shift_f,
                      stress_ev_per_a3=np.full(6, 0.01) + self.shift_s, wall_s=10.0)


def test_preset_check_pairs_frames_labelled_under_both_presets(tmp_path) -> None:
    from nepbench.cp2k_tuning import preset_check
    from nepbench.reference import label_items

    items = []
    for seed in range(3):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.rattle(0.05, seed=seed)
        atoms.info["motif"] = "crystalline"
        items.append(atoms)
    a = LABEL_SETTINGS
    b = dataclasses.replace(LABEL_SETTINGS, eps_default=1e-9)
    cache = tmp_path / "cache"
    label_items(items, _PresetEngine(a), cache)
    # B shifts every force component by 2 meV/Å, the energy by 8 × 0.1 meV/atom, σ by 0.05 GPa; 2 frames only
    label_items(items[:2], _PresetEngine(b, 0.002, 8 * 1e-4, 0.05 / tuning.EV_PER_A3_GPA), cache)
    pairs = preset_check.pair_frames(items, cache, a.to_dict(), b.to_dict(), "CP2K version fake")
    assert len(pairs) == 2 and pairs[0].motif == "crystalline" and pairs[0].n_atoms == 8
    assert pairs[0].force_rmse_mev_per_a == pytest.approx(2.0, rel=1e-6)
    assert pairs[0].energy_diff_mev_per_atom == pytest.approx(0.1, rel=1e-6)
    assert pairs[0].stress_diff_max_gpa == pytest.approx(0.05, rel=1e-6)
    result = preset_check.summary(pairs)
    assert result["accepted"] and result["n_frames"] == 2 and result["median_wall_ratio_a_over_b"] == pytest.approx(1.0)
    # another CP2K version: no record matches, so no pair (and an empty comparison is not a pass)
    assert preset_check.pair_frames(items, cache, a.to_dict(), b.to_dict(), "CP2K version other") == []
    assert not preset_check.judge([]).accepted
    label_items(items[2:], _PresetEngine(b, 0.0, 8 * 1e-3), cache)  # 1 meV/atom off: beyond 0.5
    verdict = preset_check.judge(preset_check.pair_frames(items, cache, a.to_dict(), b.to_dict(), "CP2K version fake"))
    assert not verdict.accepted and len(verdict.reasons) == 1 and "|ΔE| 1.000" in verdict.reasons[0]
    assert "| crystalline |" in preset_check.markdown_table(pairs)


def test_compare_presets_refuses_an_unknown_preset_in_one_line(tmp_path, capsys) -> None:
    from nepbench.cli import main

    assert main(["reference", "compare-presets", str(tmp_path / "spec.toml"), "--a", "label", "--b", "fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown CP2K settings preset 'fast'" in err[0] and "label-tuned" in err[0]
