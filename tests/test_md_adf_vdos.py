"""md_accuracy's ADF and vDOS: recorded per run beside their AIMD-halves floors, and end to end on
FakeCP2K's rigidly translating AIMD run (both halves identical: floors exactly zero)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from nepbench.engines.base import Trajectory
from nepbench.report import plots
from nepbench.tasks import md_adf_vdos
from nepbench.tasks.md_adf_vdos import AdfVdosParams
from nepbench.tasks.md_accuracy import check_params
from test_md_accuracy_task import PNG_SIGNATURE, _run, monkeypatch_module, reference_dir  # noqa: F401 (fixtures)


def _thermal_si(rattle_a: float, n_frames: int = 60, seed: int = 0, freq_thz: float = 10.0) -> Trajectory:
    """Diamond Si whose atoms oscillate about their sites (one frequency, random phases and
    amplitudes of about `rattle_a`), frames every 10 fs."""
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(2)
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) * 0.01
    amp = rng.normal(0, rattle_a, (len(atoms), 3))
    phase = rng.uniform(0, 2 * np.pi, (len(atoms), 3))
    pos = atoms.positions[None] + amp[None] * np.sin(2 * np.pi * freq_thz * t[:, None, None] + phase[None])
    return Trajectory(tuple(atoms.get_chemical_symbols()), t, pos, np.repeat(atoms.cell.array[None], n_frames, 0))


def test_record_run_scores_adf_and_vdos_against_the_reference_and_its_halves():
    ref = _thermal_si(0.05)
    metrics, units, series, reasons = {}, {}, {}, {}
    totals = md_adf_vdos.Totals()
    same = md_adf_vdos.record_run("same", ref, ref, AdfVdosParams(), metrics, units, series, reasons, totals)
    assert metrics["adf_l1_error_max.same"] == 0.0 and metrics["vdos_l1_error_max.same"] == 0.0
    assert metrics["vdos_nyquist_thz.same"] == pytest.approx(50.0)
    assert "vDOS to 50 THz" in same
    other = _thermal_si(0.25, seed=1, freq_thz=20.0)  # broader angles, stiffer vibration
    md_adf_vdos.record_run("other", ref, other, AdfVdosParams(), metrics, units, series, reasons, totals)
    assert metrics["adf_l1_error_max.other"] > 0.3 and metrics["vdos_l1_error_max.other"] > 0.5
    assert 0 <= metrics["adf_l1_aimd_halves.other"] < metrics["adf_l1_error_max.other"]
    assert 0 <= metrics["vdos_l1_aimd_halves.other"] < metrics["vdos_l1_error_max.other"]
    md_adf_vdos.record_maxima(totals, metrics, units, reasons)
    assert metrics["adf_l1_error_max"] == metrics["adf_l1_error_max.other"]
    assert metrics["vdos_l1_aimd_halves_max"] == max(metrics["vdos_l1_aimd_halves.same"],
                                                    metrics["vdos_l1_aimd_halves.other"])
    # the layout the report's overlays read
    assert set(series["adf"]["other"]["triplets"]) == {"*-Si-*"}
    assert set(series["vdos"]["other"]["species"]) == {"Si"}
    for draw in (plots.adf_overlay_png, plots.vdos_overlay_png):
        png = draw({"m": series})
        assert png is not None and png.startswith(PNG_SIGNATURE)


def test_a_run_without_angles_or_frames_gets_reasons_not_numbers():
    ref = _thermal_si(0.05, n_frames=5)  # halves of 2 and 3 frames: too few velocity samples
    metrics, units, series, reasons = {}, {}, {}, {}
    totals = md_adf_vdos.Totals()
    md_adf_vdos.record_run("short", ref, ref, AdfVdosParams(adf_cutoff_factor=0.5), metrics, units, series, reasons,
                           totals)
    assert "no ADF" in reasons["adf_l1_error_max.short"] and "no vDOS" in reasons["vdos_l1_error_max.short"]
    assert not any(k.startswith(("adf", "vdos")) for k in metrics)
    md_adf_vdos.record_maxima(totals, metrics, units, reasons)
    assert "no compared AIMD run" in reasons["adf_l1_error_max"]


@pytest.mark.parametrize("params, words", [({"adf_cutoff_factor": 0}, "adf_cutoff_factor"),
                                           ({"vdos_segment_ps": "x"}, "vdos_segment_ps"),
                                           ({"adf_n_bins": 1}, "adf_n_bins")])
def test_bad_parameters_are_refused(params, words):
    assert words in (check_params(params) or "")
    assert check_params({"adf_cutoff_factor": 1.2, "vdos_segment_ps": 0.3, "adf_n_bins": 45}) is None


def test_task_records_adf_and_vdos_floors(reference_dir, tmp_path):  # noqa: F811 (fixture)
    outcome = _run(reference_dir, tmp_path, runs=("long",), min_rdf_production_ps=0.0)
    m = outcome.metrics
    # FakeCP2K translates every atom rigidly: both halves have one ADF and one (DC) spectrum
    assert m["adf_l1_aimd_halves.long"] == pytest.approx(0.0, abs=1e-12)
    assert m["vdos_l1_aimd_halves.long"] == pytest.approx(0.0, abs=1e-9)
    assert 0 < m["adf_l1_error_max.long"] <= 1 and 0 < m["vdos_l1_error_max.long"] <= 1
    assert m["adf_l1_error_max"] == m["adf_l1_error_max.long"]
    assert m["vdos_l1_aimd_halves_max"] == m["vdos_l1_aimd_halves.long"]
    # frames every 2 fs: the spectrum reaches 250 THz
    assert m["vdos_nyquist_thz.long"] == pytest.approx(250.0)
    assert "ADF per central species and vDOS per species" in outcome.method
