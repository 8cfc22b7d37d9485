"""AIMD reference runs grown segment by segment: scheduling, manifest, verification, warm-up cut.

CP2K is replaced by `cp2k_fakes.FakeCP2K` (CP2K-shaped files, 1 fs per step, 2 s per step), so
these tests check nepbench's bookkeeping, not physics; the real engine is tested in
test_cp2k_engine.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import re
from pathlib import Path

import numpy as np
import pytest
from ase.io import read as ase_read

from cp2k_fakes import FakeCP2K
from nepbench import aimd
from nepbench.engines.cp2k import AIMD_SETTINGS, CP2KEngine
from nepbench.errors import InputError
from nepbench.metrics.equilibration import mean_standard_error

SPEC = """
settings = "aimd"
segment_steps = 4

[[run]]
id = "si-a"
builder = "c-Si"
params = { repeat = [1, 1, 1] }
seed = 1
temperature_k = 600.0
timestep_fs = 2.0
sample_interval = 2
warmup_steps = 2
target_steps = 6

[[run]]
id = "si-b"
builder = "c-Si"
params = { repeat = [1, 1, 1] }
seed = 2
temperature_k = 900.0
timestep_fs = 1.0
sample_interval = 2
warmup_steps = 4
target_steps = 10
"""


@pytest.fixture()
def spec(tmp_path: Path) -> aimd.AimdSpec:
    path = tmp_path / "aimd.toml"
    path.write_text(SPEC)
    return aimd.load_aimd_spec(path)


def _engine(monkeypatch: pytest.MonkeyPatch, settings=AIMD_SETTINGS) -> CP2KEngine:
    engine = CP2KEngine(settings)
    monkeypatch.setattr(engine, "version", lambda: "CP2K version fake")
    monkeypatch.setattr(engine, "_execute", FakeCP2K())
    return engine


def test_grow_is_round_robin_and_stops_at_each_target(spec, monkeypatch):
    engine = _engine(monkeypatch)
    order = []
    done = aimd.grow(spec, engine, on_segment=lambda run, result: order.append((run.id, result.total_steps)))
    assert done == {"si-a": 6, "si-b": 10}
    assert order == [("si-a", 4), ("si-b", 4), ("si-a", 6), ("si-b", 8), ("si-b", 10)]
    # a second call finds every run at its target and runs nothing
    assert aimd.grow(spec, engine) == done and len(engine._execute.inputs) == 5


def test_manifest_records_length_production_and_cost(spec, monkeypatch):
    aimd.grow(spec, _engine(monkeypatch))
    manifest = json.loads((Path(spec.path).parent / "aimd" / "manifest.json").read_text())
    run_a = manifest["runs"]["si-a"]
    assert run_a["total_steps"] == 6 and run_a["segments"] == 2
    assert run_a["length_ps"] == pytest.approx(0.012)  # 6 steps of 2 fs
    assert run_a["production_ps"] == pytest.approx(0.008)  # after the 2-step warm-up
    assert run_a["total_wall_s"] == pytest.approx(10.0)  # two fake segments of 5 s
    # SCF iterations of the timed steps (FakeCP2K: 5 + step): 7, 8, 9 in segment 0→4, 11 in 4→6
    assert run_a["scf_iterations_per_step"] == pytest.approx((7 + 8 + 9 + 11) / 4)
    assert run_a["settings"]["cutoff_ry"] == AIMD_SETTINGS.cutoff_ry
    assert "frames.extxyz.xz" in run_a["files"]
    assert run_a["growth"]["steps_to_target"] == 0 and run_a["growth"]["diffusivity_from_step"] is None
    frames_text = lzma.decompress((Path(spec.path).parent / "aimd" / "si-a" / "frames.extxyz.xz").read_bytes())
    assert frames_text.decode().count("Lattice=") == 4  # steps 0, 2, 4, 6
    assert aimd.verify_aimd(spec) == []


def test_growth_plan_counts_steps_and_hours_still_to_run():
    plan = aimd.growth_plan(70, 4150, 1650, 90.0)
    assert plan["steps_to_target"] == 4080 and plan["cp2k_hours_to_target"] == pytest.approx(102.0)
    assert plan["steps_to_diffusivity"] == 1580 and plan["cp2k_hours_to_diffusivity"] == pytest.approx(39.5)
    done = aimd.growth_plan(2000, 2150, 1650, None)
    assert done["steps_to_diffusivity"] == 0 and done["steps_to_target"] == 150
    assert done["cp2k_hours_to_target"] is None
    assert aimd.growth_plan(10, 20, None, 1.0)["steps_to_diffusivity"] is None


def test_s_per_step_is_the_median_over_steps_so_one_stalled_step_does_not_set_it(spec, monkeypatch):
    from nepbench.engines.cp2k import ENER_FILE

    aimd.grow(spec, _engine(monkeypatch))
    ener_path = Path(spec.path).parent / "aimd" / "si-a" / ENER_FILE
    lines = ener_path.read_text().splitlines()
    # FakeCP2K books 2 s per step; step 3 of si-a (in its first segment) stalls for 900 s
    lines = [" ".join(ln.split()[:6] + ["900.0"]) if ln.split()[0] == "3" else ln for ln in lines]
    ener_path.write_text("\n".join(lines) + "\n")
    state_path = ener_path.parent / "state.json"
    state = json.loads(state_path.read_text())
    state["segments"][0]["s_per_step"] = (2.0 + 900.0 + 2.0) / 3  # its timed steps 2, 3, 4
    state_path.write_text(json.dumps(state))
    manifest = aimd.write_manifest(spec)  # steps 2, 3, 4, 6 took 2, 900, 2, 2 s
    assert manifest["runs"]["si-a"]["s_per_step_median"] == pytest.approx(2.0)


def test_manifest_ignores_md_ener_rows_past_the_committed_step(spec, monkeypatch):
    """A commit killed after md.ener was appended but before state.json moved on leaves rows past
    the committed step; the temperature, drift and s/step of the manifest must not use them."""
    from nepbench.engines.cp2k import ENER_FILE

    aimd.grow(spec, _engine(monkeypatch), run_ids=["si-a"])
    before = aimd.write_manifest(spec)["runs"]["si-a"]
    ener_path = Path(spec.path).parent / "aimd" / "si-a" / ENER_FILE
    orphan = "         7      14.000000       0.1  99999.0  -10.0  5.0  900.0\n"
    ener_path.write_text(ener_path.read_text() + orphan)
    after = aimd.write_manifest(spec)["runs"]["si-a"]
    for key in ("temperature_mean_k_after_warmup", "conserved_drift_mev_per_atom_per_ps_after_warmup",
                "s_per_step_median", "s_per_step_with_restarts"):
        assert after[key] == before[key], key


def test_verify_catches_a_changed_frame_file(spec, monkeypatch):
    aimd.grow(spec, _engine(monkeypatch))
    target = Path(spec.path).parent / "aimd" / "si-b" / "frames.extxyz.xz"
    text = lzma.decompress(target.read_bytes()).decode().replace("Si ", "Si  ", 1)
    target.write_bytes(lzma.compress(text.encode()))
    problems = aimd.verify_aimd(spec)
    assert len(problems) == 1 and "si-b/frames.extxyz.xz: sha256 differs" in problems[0]


def test_load_aimd_cuts_the_warmup(spec, monkeypatch):
    aimd.grow(spec, _engine(monkeypatch))
    ref = aimd.load_aimd(spec, "si-b")
    # frames every 2 steps of 1 fs; the 4-step warm-up leaves steps 4, 6, 8, 10
    assert ref.trajectory.times_ps.tolist() == pytest.approx([0.0, 0.002, 0.004, 0.006])
    assert ref.production_ps == pytest.approx(0.006)
    assert ref.total_steps == 10


def test_load_aimd_before_its_warmup_ends_is_a_clear_error(spec, monkeypatch):
    engine = _engine(monkeypatch)
    engine.run_md_segment(aimd.run_dir_of(spec, spec.run("si-b")), spec.run("si-b").atoms(),
                          spec.run("si-b").protocol, 2)
    with pytest.raises(InputError, match="si-b has 2 steps, not past its 4-step warm-up"):
        aimd.load_aimd(spec, "si-b")
    with pytest.raises(InputError, match="si-a has not started"):
        aimd.load_aimd(spec, "si-a")


def test_resuming_with_other_cp2k_settings_is_refused(spec, monkeypatch):
    aimd.grow(spec, _engine(monkeypatch), run_ids=["si-a"])
    spec_longer = dataclasses.replace(spec, runs=tuple(
        dataclasses.replace(r, target_steps=8) for r in spec.runs))
    other = _engine(monkeypatch, dataclasses.replace(AIMD_SETTINGS, cutoff_ry=AIMD_SETTINGS.cutoff_ry + 50))
    with pytest.raises(InputError, match=r"state.json.*CP2K settings differ.*cutoff_ry"):
        aimd.grow(spec_longer, other, run_ids=["si-a"])
    assert aimd.committed_steps(spec, spec.run("si-a")) == 6


@pytest.mark.parametrize("edit, phrase", [
    (lambda t: t.replace('settings = "aimd"', 'settings = "fast"'), "unknown CP2K settings preset 'fast'"),
    (lambda t: t.replace("segment_steps = 4", "segment_steps = 4\nsegments = 3"), "unknown key(s) segments"),
    (lambda t: t.replace('builder = "c-Si"', 'builder = "c-Xx"', 1), "AIMD run 'si-a': unknown builder 'c-Xx'"),
    (lambda t: t.replace("warmup_steps = 2", "warmup_steps = 6", 1), "warmup_steps 6 must be >= 0 and below target_steps 6"),
    (lambda t: t.replace("warmup_steps = 2", "warmup_steps = 3", 1), "warmup_steps 3 must be a multiple of sample_interval 2"),
    (lambda t: t.replace("seed = 1\n", "seed = 1\nsed = 1\n", 1), "AIMD run 'si-a': unknown key(s) sed"),
    (lambda t: t.replace('id = "si-b"', 'id = "si-a"'), "duplicate run ids"),
    (lambda t: t.replace("target_steps = 6", "target_steps = 6\ndiffusivity_from_step = 8", 1),
     "diffusivity_from_step 8 must be an integer after warmup_steps 2 and at most target_steps 6"),
    (lambda t: t.replace("target_steps = 6", "target_steps = 6\ndiffusivity_from_step = 2", 1),
     "diffusivity_from_step 2 must be an integer after warmup_steps 2"),
    (lambda t: t.replace('settings = "aimd"', 'settings = ["aimd"]'), "unknown CP2K settings preset ['aimd']"),
    (lambda t: t.replace('builder = "c-Si"', 'builder = ["c-Si"]', 1), "AIMD run 'si-a': unknown builder ['c-Si']"),
    (lambda t: t.replace("params = { repeat = [1, 1, 1] }", "params = { repaet = [1, 1, 1] }", 1),
     "AIMD run 'si-a': builder 'c-Si' takes no parameter(s) repaet"),
    (lambda t: t.replace("params = { repeat = [1, 1, 1] }", "params = { repeat = [1, 1] }", 1),
     "AIMD run 'si-a': builder 'c-Si': parameter repeat must be a list of 3 integers >= 1, got [1, 1]"),
])
def test_a_spec_with_unknown_keys_builders_or_warmups_is_refused(tmp_path, edit, phrase):
    path = tmp_path / "aimd.toml"
    path.write_text(edit(SPEC))
    with pytest.raises(Exception, match=re.escape(phrase)) as info:
        aimd.load_aimd_spec(path)
    assert str(path) in str(info.value)


def test_unknown_run_and_malformed_spec_name_the_file(spec, tmp_path):
    with pytest.raises(Exception, match="no AIMD run 'nope'"):
        spec.run("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[run]]\nid = 'x'\nbuilder = 'c-Si'\n")
    with pytest.raises(Exception, match=r"bad.toml: AIMD run 'x'"):
        aimd.load_aimd_spec(bad)


def test_manifest_drift_is_the_fitted_slope_of_the_conserved_quantity_per_atom_after_the_warm_up(spec, monkeypatch):
    """The conserved quantity falls fast through the warm-up, then rises 1 eV/ps over 8 atoms
    (125 meV/atom/ps): the drift is the production's. Fitted over every step, the warm-up's fall
    set the slope (on a-LiC-1200K: −0.35 over the whole run against +1.78 over the production)."""
    from nepbench.engines.cp2k import ENER_FILE, HARTREE_EV

    aimd.grow(spec, _engine(monkeypatch))
    run = spec.run("si-a")
    ener = aimd.run_dir_of(spec, run) / ENER_FILE
    rows = [ln.split() for ln in ener.read_text().splitlines() if not ln.startswith("#")]
    warmup_fs = run.protocol.warmup_steps * run.protocol.timestep_fs
    for row in rows:
        t_fs = float(row[1])
        row[5] = repr(-30.99 + (t_fs - 50 * min(t_fs, warmup_fs)) / 1000 / HARTREE_EV)
    ener.write_text("# header\n" + "\n".join(" ".join(r) for r in rows) + "\n")
    run_a = aimd.write_manifest(spec)["runs"]["si-a"]
    assert run.protocol.warmup_steps >= 1 and len(rows) - run.protocol.warmup_steps >= 3
    assert run_a["conserved_drift_mev_per_atom_per_ps_after_warmup"] == pytest.approx(1000 / 8, rel=1e-3)
    assert run_a["conserved_drift_stderr_mev_per_atom_per_ps_after_warmup"] == pytest.approx(0.0, abs=1e-3)


def test_manifest_has_the_potential_energy_trend_and_the_heat_offset_it_implies(spec, monkeypatch):
    """A potential energy falling 1 eV/ps over 8 atoms is a trend of -125 meV/atom/ps; that heat,
    released into a CSVR thermostat of 50 fs, holds T 2·1·0.05 / (21 k_B) = 55 K above target."""
    from ase import units

    from nepbench.commands.reference import aimd_trend_lines
    from nepbench.engines.cp2k import ENER_FILE, HARTREE_EV

    monkeypatch.setattr(aimd.thermo, "TREND_MIN_STEPS", 3)  # the fake runs are 6 and 10 steps long
    aimd.grow(spec, _engine(monkeypatch))
    ener = aimd.run_dir_of(spec, spec.run("si-b")) / ENER_FILE
    rows = [ln.split() for ln in ener.read_text().splitlines() if not ln.startswith("#")]
    for row in rows:
        row[4] = repr(-31.0 - float(row[1]) / 1000 / HARTREE_EV)
    ener.write_text("# header\n" + "\n".join(" ".join(r) for r in rows) + "\n")
    manifest = aimd.write_manifest(spec)
    run_b = manifest["runs"]["si-b"]
    assert spec.run("si-b").protocol.thermostat_coupling_fs == 50.0
    assert run_b["potential_trend_mev_per_atom_per_ps_after_warmup"] == pytest.approx(-125.0, abs=0.01)
    assert run_b["potential_trend_stderr_mev_per_atom_per_ps_after_warmup"] == pytest.approx(0.0, abs=0.01)
    assert run_b["thermostat_heat_offset_k"] == pytest.approx(2 * 1.0 * 0.05 / (21 * units.kB), abs=0.05)
    (line,) = [ln for ln in aimd_trend_lines(manifest) if "si-b" in ln]
    assert "-125.0 ± 0.0 meV/atom/ps" in line and "+55 K off target" in line
    monkeypatch.setattr(aimd.thermo, "TREND_MIN_STEPS", 10)  # si-b has 7 steps past its warm-up: too few
    assert aimd.write_manifest(spec)["runs"]["si-b"]["thermostat_heat_offset_k"] is None


def test_manifest_has_temperature_and_drift(spec, monkeypatch):
    aimd.grow(spec, _engine(monkeypatch))
    run_b = json.loads((Path(spec.path).parent / "aimd" / "manifest.json").read_text())["runs"]["si-b"]
    # fake .ener: T = 300 + step, conserved = -30.99 Ha every step; warm-up 4 steps of 1 fs
    assert run_b["temperature_mean_k_after_warmup"] == pytest.approx(300 + (4 + 10) / 2)
    # steps 4–10: 304 … 310 K, a ramp; its g > 1, so the error is wider than σ/√n = 0.76 K
    ramp = np.arange(304.0, 311.0)
    assert run_b["temperature_stderr_k_after_warmup"] > round(ramp.std() / np.sqrt(ramp.size), 1)
    assert run_b["temperature_stderr_k_after_warmup"] == pytest.approx(mean_standard_error(ramp), abs=0.05)
    assert run_b["conserved_drift_mev_per_atom_per_ps_after_warmup"] == pytest.approx(0.0, abs=1e-9)


def test_a_grower_skips_runs_another_process_holds(spec, monkeypatch):
    import fcntl

    lock = aimd.run_dir_of(spec, spec.run("si-a")) / ".lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as held:  # another process is growing si-a
        fcntl.flock(held, fcntl.LOCK_EX)
        engine = _engine(monkeypatch)
        done = aimd.grow(spec, engine, max_wall_s=4.0, poll_s=0.05)  # 1 s was too short on a busy machine
        assert done == {"si-a": 0, "si-b": 10}  # si-b grown to its target, si-a left alone
        temperatures = [ln.split()[1] for text in engine._execute.inputs for ln in text.splitlines()
                        if ln.strip().startswith("TEMPERATURE")]
        assert temperatures == ["900.0"] * 3  # three si-b segments (4+4+2 steps), none for si-a
    assert aimd.grow(spec, engine) == {"si-a": 6, "si-b": 10}  # free again once released
    assert not (Path(spec.path).parent / "aimd" / "manifest.json").read_text().count(".lock")


def test_show_table_lists_each_run_with_length_and_cost(spec, monkeypatch):
    from nepbench.commands.reference import aimd_table

    aimd.grow(spec, _engine(monkeypatch))
    lines = aimd_table(json.loads((Path(spec.path).parent / "aimd" / "manifest.json").read_text()))
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"si-a", "si-b"}
    # si-a: 8 atoms, 6/6 steps of 2 fs = 0.012 ps, 0.008 ps after warm-up, 10 s of CP2K
    assert rows["si-a"][1:4] + rows["si-a"][6:8] == ["8", "6/6", "2", "0.012", "0.008"]
    # target 600 K; FakeCP2K books 1 fs and 300 + step K per step: steps 4–6 are past 0.004 ps
    assert rows["si-a"][4] == "600/305±0"  # steps 4–6: 304, 305, 306 K, uncorrelated: σ/√3 = 0.47 K
    assert rows["si-a"][5] == "2/—"  # 2-step warm-up; 6 steps are too few to detect equilibration
    assert rows["si-a"][8] == f"{10 / 3600:.2f}"
    assert rows["si-a"][9] == "0.00"  # at its target: nothing left
    assert rows["si-a"][11] == f"{(7 + 8 + 9 + 11) / 4:.1f}"  # SCF iterations per step


def test_show_table_gives_the_cp2k_time_left_at_the_measured_speed():
    from nepbench.commands.reference import aimd_table

    run = {"n_atoms": 32, "total_steps": 30, "target_steps": 600,
           "protocol": {"timestep_fs": 2.0, "temperature_k": 900.0, "warmup_steps": 150},
           "length_ps": 0.06, "production_ps": 0.0, "total_wall_s": 2400.0, "s_per_step_median": 80.0,
           "ranks": 1, "scf_iterations_per_step": None, "conserved_drift_mev_per_atom_per_ps_after_warmup": None,
           "potential_energy_equilibrated_at_step": 158}
    row = aimd_table({"runs": {"a": run}})[2].split()
    assert row[4] == "900/—"  # no production yet: no mean temperature
    run.update(temperature_mean_k_after_warmup=988.4, temperature_stderr_k_after_warmup=36.2)
    assert aimd_table({"runs": {"a": run}})[2].split()[4] == "900/988±36"
    del run["temperature_stderr_k_after_warmup"]  # a manifest from before the error was recorded
    assert aimd_table({"runs": {"a": run}})[2].split()[4] == "900/988"
    assert row[5] == "150/158"
    assert row[8:11] == ["0.67", f"{570 * 80 / 3600:.2f}", "80.0"]  # 570 steps left at 80 s
    assert row[11] == "—"
    run["s_per_step_with_restarts"] = 84.0  # each segment's restart and untimed first step included
    assert aimd_table({"runs": {"a": run}})[2].split()[9] == f"{570 * 84 / 3600:.2f}"


def test_the_cost_per_step_with_restarts_is_the_median_segment_wall_time_per_step():
    state = {"ranks": 1, "segments": [
        {"start_step": 0, "end_step": 10, "wall_s": 700.0, "ranks": 1},
        {"start_step": 10, "end_step": 20, "wall_s": 720.0, "ranks": 1},
        {"start_step": 20, "end_step": 30, "wall_s": 5000.0, "ranks": 1},  # a paused stretch: not the median
        {"start_step": 30, "end_step": 40, "wall_s": 300.0, "ranks": 2}]}  # another rank count: left out
    assert aimd.manifest._s_per_step_with_restarts(state) == 72.0
    assert aimd.manifest._s_per_step_with_restarts({"ranks": 1, "segments": []}) is None


def test_a_stop_request_ends_growth_after_the_running_segment(spec, monkeypatch):
    engine = _engine(monkeypatch)
    asked = []
    done = aimd.grow(spec, engine, on_segment=lambda run, result: asked.append(run.id),
                     stop_requested=lambda: bool(asked))
    assert asked == ["si-a"] and done == {"si-a": 4, "si-b": 0}  # the first segment is committed
    assert json.loads((Path(spec.path).parent / "aimd" / "si-a" / "state.json").read_text())["total_steps"] == 4


def test_sigterm_asks_once_then_interrupts():
    import os
    import signal

    from nepbench.commands.reference import graceful_stop

    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop = graceful_stop()
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set()  # first signal: finish the segment, then stop
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # second: abandon it
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_each_segment_records_its_ranks_and_s_per_step_uses_the_current_ones(spec, monkeypatch):
    from nepbench.engines.cp2k import ENER_FILE

    engine = _engine(monkeypatch)
    engine.ranks = 1
    engine.run_md_segment(Path(spec.path).parent / "aimd" / "si-a", spec.run("si-a").atoms(),
                          spec.run("si-a").protocol, 4)
    engine.ranks = 16  # e.g. resumed on an HPC node
    engine.run_md_segment(Path(spec.path).parent / "aimd" / "si-a", spec.run("si-a").atoms(),
                          spec.run("si-a").protocol, 2)
    folder = Path(spec.path).parent / "aimd" / "si-a"
    state = json.loads((folder / "state.json").read_text())
    assert [s["ranks"] for s in state["segments"]] == [1, 16] and state["ranks"] == 16
    # the 1-rank steps 2–4 took 10 s each, the 16-rank step 6 took FakeCP2K's 2 s
    lines = [" ".join(ln.split()[:6] + ["10.0"]) if ln.split()[0] in ("2", "3", "4") else ln
             for ln in (folder / ENER_FILE).read_text().splitlines()]
    (folder / ENER_FILE).write_text("\n".join(lines) + "\n")
    run = aimd.write_manifest(spec)["runs"]["si-a"]
    assert run["ranks"] == 16 and run["s_per_step_median"] == pytest.approx(2.0)


# ------------------------------------------------------------------ pre-relaxed start (prerelax.py)

V1_MODEL = Path(__file__).resolve().parents[1] / "models" / "nepbench-lisic-v1" / "nep.txt"
PRERELAX_SPEC = f"""
settings = "aimd"
segment_steps = 4

[[run]]
id = "lic"
builder = "a-LiC"
params = {{ n_c = 12 }}
seed = 3
temperature_k = 1200.0
timestep_fs = 1.0
sample_interval = 2
warmup_steps = 2
target_steps = 8
prerelax = {{ model = "{V1_MODEL}", fmax_ev_per_a = 0.05 }}
"""


def _grow_one_segment(spec, engine) -> None:
    done: list[int] = []
    aimd.grow(spec, engine, on_segment=lambda run, result: done.append(1), stop_requested=lambda: bool(done))
    assert done == [1]


def _coords(input_text: str):
    import numpy as np

    block = input_text.split("&COORD")[1].split("&END COORD")[0]
    return np.array([[float(x) for x in line.split()[1:4]] for line in block.strip().splitlines()])


def test_prerelaxed_start_is_relaxed_once_and_is_where_cp2k_starts(tmp_path, monkeypatch):
    import numpy as np
    from ase.io import read

    from nepbench import prerelax

    (tmp_path / "aimd.toml").write_text(PRERELAX_SPEC)
    spec = aimd.load_aimd_spec(tmp_path / "aimd.toml")
    run = spec.run("lic")
    engine = _engine(monkeypatch)
    _grow_one_segment(spec, engine)
    start = read(aimd.run_dir_of(spec, run) / "start.extxyz")
    assert start.info["prerelax_fmax_ev_per_a"] < 0.05
    assert start.info["prerelax_energy_after_ev_per_atom"] < start.info["prerelax_energy_before_ev_per_atom"] - 0.5
    built = run.atoms()
    first = _coords(engine._execute.inputs[0])
    np.testing.assert_allclose(first, start.positions, atol=1e-6)
    assert np.abs(first - built.positions).max() > 0.1  # CP2K did not start from the random packing

    def no_second_relaxation(*args, **kwargs):
        raise AssertionError("relaxed again")

    monkeypatch.setattr(prerelax, "relax_positions", no_second_relaxation)
    assert aimd.grow(spec, engine, run_ids=["lic"]) == {"lic": 8}
    manifest = json.loads((tmp_path / "aimd" / "manifest.json").read_text())
    entry = manifest["runs"]["lic"]
    assert entry["prerelax"] == {"model": str(V1_MODEL), "fmax_ev_per_a": 0.05, "max_steps": 3000}
    assert "start.extxyz" in entry["files"]  # hashed, so `reference verify` catches a changed start


def test_prerelax_cannot_be_added_to_a_run_that_began_without_it(tmp_path, monkeypatch):
    unrelaxed = PRERELAX_SPEC.split("prerelax =")[0]
    (tmp_path / "aimd.toml").write_text(unrelaxed)
    _grow_one_segment(aimd.load_aimd_spec(tmp_path / "aimd.toml"), _engine(monkeypatch))
    (tmp_path / "aimd.toml").write_text(PRERELAX_SPEC)
    with pytest.raises(InputError, match="began without pre-relaxation"):
        aimd.grow(aimd.load_aimd_spec(tmp_path / "aimd.toml"), _engine(monkeypatch))


def test_a_stored_start_must_be_relaxed_as_the_spec_says(tmp_path, monkeypatch):
    """start.extxyz was taken on its species and cell alone: a spec whose prerelax named another
    model or a tighter fmax went on from the old start, and the manifest recorded the new settings."""
    from ase.io import read, write

    from random_models import write_random_model
    from nepbench.prerelax import Prerelax, start_structure

    (tmp_path / "aimd.toml").write_text(PRERELAX_SPEC)
    spec = aimd.load_aimd_spec(tmp_path / "aimd.toml")
    run = spec.run("lic")
    _grow_one_segment(spec, _engine(monkeypatch))
    folder = aimd.run_dir_of(spec, run)
    stored = read(folder / "start.extxyz")
    assert start_structure(folder, run.atoms(), Prerelax(str(V1_MODEL), 0.05), started=True).info == stored.info
    with pytest.raises(InputError, match=r"start.extxyz: start structure was relaxed to max\|F\| 0\.0\d\d eV/Å, the "
                       r"spec's prerelax asks for < 0\.001 eV/Å; remove the run's folder"):
        start_structure(folder, run.atoms(), Prerelax(str(V1_MODEL), 0.001), started=True)
    other = write_random_model(tmp_path / "other.txt", seed=1)
    with pytest.raises(InputError, match="start structure was relaxed with nep.txt .*, the spec's prerelax names other.txt"):
        start_structure(folder, run.atoms(), Prerelax(str(other), 0.05), started=True)
    stored.info = {}
    write(folder / "start.extxyz", stored)
    with pytest.raises(InputError, match="start structure has no relaxation record"):
        aimd.grow(spec, _engine(monkeypatch), run_ids=["lic"])


def test_prerelax_settings_are_checked(tmp_path):
    (tmp_path / "aimd.toml").write_text(PRERELAX_SPEC.replace("fmax_ev_per_a = 0.05", "fmax = 0.05"))
    with pytest.raises(Exception, match=r"aimd.toml: AIMD run 'lic': prerelax needs 'model'.*unknown: fmax"):
        aimd.load_aimd_spec(tmp_path / "aimd.toml")


@pytest.mark.parametrize("damage, phrase", [
    (lambda folder, spec_path: (folder / "frames.extxyz.xz").write_bytes(b"garbage"), "do not read back"),
    (lambda folder, spec_path: (folder / "state.json").write_text("{not json"), "state.json: unreadable MD run state"),
    (lambda folder, spec_path: spec_path.write_text(""), "defines no [[run]]"),
    (lambda folder, spec_path: (folder / "md.ener").write_text("garbage\n"), "malformed cp2k .ener line"),
])
def test_manifest_only_refuses_damaged_data_and_keeps_the_manifest(spec, monkeypatch, capsys, damage, phrase):
    """Rewriting the manifest over damaged files would record their sha256, and verify would then
    vouch for them; an empty spec would drop every committed run."""
    from nepbench.cli import main

    aimd.grow(spec, _engine(monkeypatch))
    manifest = Path(spec.path).parent / "aimd" / "manifest.json"
    before = manifest.read_bytes()
    damage(aimd.run_dir_of(spec, spec.run("si-a")), Path(spec.path))
    assert main(["reference", "aimd", str(spec.path), "--manifest-only"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0], err
    assert manifest.read_bytes() == before


@pytest.mark.parametrize("line", ["garbage", "a b c d e f g"])
def test_a_damaged_energy_file_is_named_where_the_thermo_history_reads_it(spec, monkeypatch, line):
    aimd.grow(spec, _engine(monkeypatch))
    ener = aimd.run_dir_of(spec, spec.run("si-a")) / "md.ener"
    ener.write_text(line + "\n")
    with pytest.raises(InputError, match=re.escape(f"{ener}: malformed cp2k .ener line")):
        aimd.thermo_history(spec, "si-a")


def test_changed_spec_is_caught_by_verify_and_manifest_only_rewrites_it(spec, monkeypatch, capsys):
    """Lengthening a warm-up in aimd.toml leaves the committed steps valid but the manifest stale:
    verify says so, and `reference aimd --manifest-only` rewrites it without running CP2K."""
    from nepbench.cli import main

    aimd.grow(spec, _engine(monkeypatch))
    path = Path(spec.path)
    path.write_text(path.read_text().replace("warmup_steps = 2\n", "warmup_steps = 4\n", 1))
    problems = aimd.verify_aimd(aimd.load_aimd_spec(path))
    assert len(problems) == 1 and "written for another version of aimd.toml" in problems[0]
    monkeypatch.setattr("nepbench.commands.reference.make_cp2k_engine",
                        lambda *a, **k: pytest.fail("--manifest-only must not start CP2K"))
    assert main(["reference", "aimd", str(path), "--manifest-only"]) == 0
    assert "manifest rewritten for si-a, si-b" in capsys.readouterr().out
    assert aimd.verify_aimd(aimd.load_aimd_spec(path)) == []
    entry = json.loads((path.parent / "aimd" / "manifest.json").read_text())["runs"]["si-a"]
    assert entry["protocol"]["warmup_steps"] == 4 and entry["production_ps"] == pytest.approx(0.004)


def test_a_grower_writes_the_manifest_for_aimd_toml_as_edited_while_it_runs(spec, monkeypatch):
    """A longer warm-up written into aimd.toml while a grower runs reaches the manifest the
    grower writes next, with the file's sha256: verify finds nothing stale."""
    path = Path(spec.path)
    engine = _engine(monkeypatch)
    fake = engine._execute

    def edit_then_run(*args, **kwargs):
        if len(fake.inputs) == 1:  # during the second segment
            path.write_text(path.read_text().replace("warmup_steps = 2\n", "warmup_steps = 4\n", 1))
        return fake(*args, **kwargs)

    monkeypatch.setattr(engine, "_execute", edit_then_run)
    aimd.grow(spec, engine, run_ids=["si-a"])
    manifest = json.loads((path.parent / "aimd" / "manifest.json").read_text())
    assert manifest["runs"]["si-a"]["protocol"]["warmup_steps"] == 4
    assert manifest["runs"]["si-a"]["production_ps"] == pytest.approx(0.004)
    assert aimd.verify_aimd(aimd.load_aimd_spec(path)) == []


@pytest.mark.parametrize("edit", [
    ("temperature_k = 600.0\n", "temperature_k = 700.0\n"),  # other dynamics: not this run's manifest
    ("[[run]]\nid = \"si-a\"", "[[run]\nid = \"si-a\""),      # no longer loads
])
def test_a_grower_keeps_its_own_spec_when_aimd_toml_changes_the_run_or_breaks(spec, monkeypatch, edit):
    path = Path(spec.path)
    engine = _engine(monkeypatch)
    fake = engine._execute

    def edit_then_run(*args, **kwargs):
        if len(fake.inputs) == 0:
            path.write_text(path.read_text().replace(*edit, 1))
        return fake(*args, **kwargs)

    monkeypatch.setattr(engine, "_execute", edit_then_run)
    aimd.grow(spec, engine, run_ids=["si-a"], stop_requested=lambda: len(fake.inputs) >= 1)  # one segment
    manifest = json.loads((path.parent / "aimd" / "manifest.json").read_text())
    assert manifest["runs"]["si-a"]["protocol"]["temperature_k"] == 600.0
    assert manifest["spec_sha256"] == spec.sha256 != aimd.manifest.sha256_file(path)


def _manifest_of_a_120_step_run_with_potential(spec, monkeypatch, potential_ev) -> dict:
    """Grow si-b to 120 FakeCP2K steps, give step n the potential energy potential_ev(n) (eV, whole
    cell, plus -100 Ha) in its md.ener, and return the run's manifest entry."""
    from nepbench.engines.cp2k import ENER_FILE, HARTREE_EV

    path = Path(spec.path)
    path.write_text(path.read_text().replace("target_steps = 10\n", "target_steps = 120\n", 1))
    spec = aimd.load_aimd_spec(path)
    aimd.grow(spec, _engine(monkeypatch), run_ids=["si-b"])
    ener_path = path.parent / "aimd" / "si-b" / ENER_FILE
    rows = []
    for line in ener_path.read_text().splitlines():
        cols = line.split()
        if not line.startswith("#"):
            cols[4] = f"{-100.0 + potential_ev(int(cols[0])) / HARTREE_EV:.12f}"
        rows.append(" ".join(cols))
    ener_path.write_text("\n".join(rows) + "\n")
    return aimd.write_manifest(spec)["runs"]["si-b"]


def test_manifest_gives_the_step_where_the_potential_energy_is_detected_stationary(spec, monkeypatch):
    """A relaxation (0.4 eV decaying over 15 steps) plus 10 meV of noise: the detected start of
    equilibration lies past the decay and well before the run's end."""
    rng = np.random.default_rng(1)
    entry = _manifest_of_a_120_step_run_with_potential(
        spec, monkeypatch, lambda step: 0.4 * np.exp(-step / 15) + 0.01 * rng.normal())
    assert 25 <= entry["potential_energy_equilibrated_at_step"] <= 80  # 0.4 eV e^(-t/15) = 10 meV at t = 55
    assert entry["potential_energy_effective_samples"] >= aimd.EQUILIBRATION_MIN_EFFECTIVE_SAMPLES


def test_no_equilibration_step_is_given_while_the_energy_still_drifts(spec, monkeypatch):
    """A potential energy falling steadily over the whole run leaves too few effective samples
    after any start: the manifest gives no step rather than a spurious one."""
    rng = np.random.default_rng(2)
    entry = _manifest_of_a_120_step_run_with_potential(
        spec, monkeypatch, lambda step: -0.002 * step + 0.01 * rng.normal())
    assert entry["potential_energy_equilibrated_at_step"] is None
    assert entry["potential_energy_effective_samples"] < aimd.EQUILIBRATION_MIN_EFFECTIVE_SAMPLES


def _kill_before_state_write(monkeypatch) -> None:
    """The next commit dies after its frames and md.ener are written, before state.json."""
    from nepbench.engines.cp2k import segments

    def killed(path, value):
        raise KeyboardInterrupt("killed before state.json")

    monkeypatch.setattr(segments, "atomic_write_json", killed)


def _ener_steps(folder: Path) -> list[int]:
    from nepbench.engines.cp2k import ENER_FILE

    return [int(ln.split()[0]) for ln in (folder / ENER_FILE).read_text().splitlines() if not ln.startswith("#")]


def test_a_killed_first_commit_leaves_no_second_step_zero(spec, monkeypatch):
    """Frames and md.ener rows on disk without a state.json are a killed first commit's: the
    rerun starts from nothing, so step 0 appears once and the manifest can be written."""
    from nepbench.engines.cp2k import read_md_run

    engine = _engine(monkeypatch)
    with monkeypatch.context() as patch:
        _kill_before_state_write(patch)
        with pytest.raises(KeyboardInterrupt):
            aimd.grow(spec, engine, run_ids=["si-a"])
    folder = aimd.run_dir_of(spec, spec.run("si-a"))
    assert not (folder / "state.json").exists() and _ener_steps(folder) == [0, 1, 2, 3, 4]
    assert aimd.grow(spec, engine, run_ids=["si-a"]) == {"si-a": 6}
    assert _ener_steps(folder) == [0, 1, 2, 3, 4, 5, 6]
    traj, _, total, _ = read_md_run(folder)
    assert total == 6 and traj.times_ps.tolist() == pytest.approx([0.0, 0.004, 0.008, 0.012])
    assert aimd.verify_aimd(spec) == []


def test_restart_files_a_killed_commit_left_are_removed_and_not_in_the_manifest(spec, monkeypatch):
    engine = _engine(monkeypatch)
    segments = []
    aimd.grow(spec, engine, run_ids=["si-a"], on_segment=lambda run, result: segments.append(run.id),
              stop_requested=lambda: bool(segments))  # one segment: steps 0-4
    folder = aimd.run_dir_of(spec, spec.run("si-a"))
    stray = [folder / "restart" / "step-000000099.restart", folder / "restart" / "step-000000099.wfn"]
    for path in stray:  # what a commit killed mid-copy leaves: a partial restart of a step never committed
        path.write_text("partial")
    manifest = aimd.write_manifest(spec)["runs"]["si-a"]  # FakeCP2K writes no wavefunction
    assert [f for f in manifest["files"] if f.startswith("restart/")] == ["restart/step-000000004.restart"]
    aimd.grow(spec, engine, run_ids=["si-a"])  # the next commit removes what its state does not name
    assert [p.name for p in (folder / "restart").iterdir()] == ["step-000000006.restart"]
    assert aimd.verify_aimd(spec) == []


def test_the_manifest_refuses_dynamics_the_committed_run_was_not_made_with(spec, monkeypatch):
    """After aimd.toml's time step is edited, `--manifest-only` would describe the committed 2 fs
    steps as 1 fs ones (half the length); it refuses instead, naming the run."""
    from nepbench.cli import main

    aimd.grow(spec, _engine(monkeypatch))
    manifest_path = Path(spec.path).parent / "aimd" / "manifest.json"
    before = manifest_path.read_text()
    path = Path(spec.path)
    path.write_text(path.read_text().replace("timestep_fs = 2.0", "timestep_fs = 1.0", 1))
    with pytest.raises(InputError, match="run si-a: protocol timestep_fs=1.0 differs from the run's 2.0"):
        aimd.write_manifest(aimd.load_aimd_spec(path))
    assert main(["reference", "aimd", str(path), "--manifest-only"]) == 1
    assert manifest_path.read_text() == before
    # a warm-up or target edit is analysis and length only: allowed
    path.write_text(SPEC.replace("warmup_steps = 2", "warmup_steps = 4", 1))
    assert aimd.write_manifest(aimd.load_aimd_spec(path))["runs"]["si-a"]["production_ps"] == pytest.approx(0.004)


def test_the_manifest_is_taken_again_when_a_grower_commits_while_it_hashes(spec, monkeypatch):
    """Another process's commit can remove the restart file being hashed; the snapshot is retaken."""
    aimd.grow(spec, _engine(monkeypatch))
    folder = aimd.run_dir_of(spec, spec.run("si-a"))
    real = aimd.manifest.sha256_file
    vanished = []

    def racing(path):
        if Path(path).name.endswith(".restart") and not vanished:
            vanished.append(path)
            raise FileNotFoundError(path)  # unlinked by the other process's commit
        return real(path)

    monkeypatch.setattr(aimd.manifest, "sha256_file", racing)
    manifest = aimd.write_manifest(spec)
    assert vanished and "restart/step-000000006.restart" in manifest["runs"]["si-a"]["files"]
    assert (folder / "restart" / "step-000000006.restart").is_file()


def test_a_run_grown_with_two_cp2k_versions_says_so(spec, monkeypatch):
    engine = _engine(monkeypatch)
    segments = []
    aimd.grow(spec, engine, run_ids=["si-a"], on_segment=lambda run, result: segments.append(run.id),
              stop_requested=lambda: bool(segments))
    monkeypatch.setattr(engine, "version", lambda: "CP2K version 2024.1")
    aimd.grow(spec, engine, run_ids=["si-a"])
    manifest = aimd.write_manifest(spec)["runs"]["si-a"]
    assert manifest["cp2k_version"] == "CP2K version fake + CP2K version 2024.1"


def test_the_cp2k_engine_a_spec_names_is_built_and_an_unknown_preset_refused():
    """`reference build|aimd` make their engine here before CP2K starts: a name error in it stopped
    every grower at start-up, and no test ran it without CP2K."""
    from nepbench.commands.reference import make_cp2k_engine
    from nepbench.engines.cp2k import AIMD_SETTINGS, LABEL_SETTINGS
    from nepbench.errors import InputError

    assert make_cp2k_engine("aimd", 1, None).settings == AIMD_SETTINGS
    engine = make_cp2k_engine("label", 2, "srun", "spec.toml")
    assert engine.settings == LABEL_SETTINGS and engine.ranks == 2
    with pytest.raises(InputError, match=r"spec\.toml: unknown CP2K settings preset 'fast' \(known: label, label-tuned, label-kp, aimd, aimd-v1, aimd-kp\)"):
        make_cp2k_engine("fast", 1, None, "spec.toml")


def test_readers_refuse_a_spec_that_no_longer_describes_the_committed_run(spec, monkeypatch):
    """load_aimd took the warm-up cut from aimd.toml: after a time-step edit it kept warm-up frames as
    production. A builder edit relabelled the committed system (the manifest recorded the new
    parameters beside the old formula)."""
    aimd.grow(spec, _engine(monkeypatch))
    path = Path(spec.path)
    assert len(aimd.load_aimd(spec, "si-a").trajectory.times_ps) >= 2 and aimd.thermo_history(spec, "si-a")
    path.write_text(SPEC.replace("timestep_fs = 2.0", "timestep_fs = 1.0", 1))
    edited = aimd.load_aimd_spec(path)
    for read in (aimd.load_aimd, aimd.thermo_history):
        with pytest.raises(InputError, match="run si-a: protocol timestep_fs=1.0 differs from the run's 2.0"):
            read(edited, "si-a")
    path.write_text(SPEC.replace("params = { repeat = [1, 1, 1] }", "params = { repeat = [1, 1, 2] }", 1))
    edited = aimd.load_aimd_spec(path)
    with pytest.raises(InputError, match=r"run si-a: builder c-Si .* makes Si16, the committed run holds Si8"):
        aimd.write_manifest(edited)
    with pytest.raises(InputError, match="makes Si16"):
        aimd.load_aimd(edited, "si-a")


def test_sampled_aimd_frames_carry_dft_forces_and_energy(spec, monkeypatch):
    """Every kept frame of a segment has CP2K's forces (Hartree/Bohr → eV/Å) and its potential
    energy, so AIMD frames serve parity as labelled near-equilibrium data."""
    from nepbench.engines.cp2k import HARTREE_EV, HARTREE_PER_BOHR_EV_PER_A
    from nepbench.structures import labels_of

    engine = _engine(monkeypatch)
    aimd.grow(spec, engine, run_ids=["si-a"])
    folder = aimd.run_dir_of(spec, spec.run("si-a"))
    frames = ase_read(io.StringIO(lzma.decompress((folder / "frames.extxyz.xz").read_bytes()).decode()),
                      index=":", format="extxyz")
    assert frames and all(labels_of(f)[1] is not None for f in frames)
    for frame in frames:
        step = int(frame.info["step"])
        energy, forces, _ = labels_of(frame)
        assert forces[0, 0] == pytest.approx(0.001 * step * HARTREE_PER_BOHR_EV_PER_A)
        assert forces[1, 1] == pytest.approx(-0.004 * HARTREE_PER_BOHR_EV_PER_A)
        assert energy == pytest.approx((-31.0 - step * 1e-3) * HARTREE_EV)


def test_warmup_stationarity_sees_a_trend():
    t = np.linspace(0.0, 0.3, 61)
    rng = np.random.default_rng(1)
    flat = -100.0 * 32 + rng.normal(0, 0.02, t.size)
    falling = flat - 32 * 0.2 * t  # -200 meV/atom/ps
    ok = aimd.warmup_stationarity(t, flat, 32, 0.3)
    bad = aimd.warmup_stationarity(t, falling, 32, 0.3)
    assert ok["warmup_stationary"] is True
    assert bad["warmup_stationary"] is False and bad["warmup_trend_mev_per_atom_per_ps"] == pytest.approx(-200, rel=0.1)
    assert aimd.warmup_stationarity(t, flat, 32, 0.0)["warmup_stationary"] is None


def test_nep_pre_equilibration_is_recorded_and_checked(tmp_path):
    """prerelax with md_ps: NEP MD after the relaxation, in the run's cell; the stored start says
    how long it ran, and a spec asking for another length refuses it."""
    from nepbench import prerelax as pr
    from nepbench import systems

    built = systems.build("a-LixSi", seed=3, x=2.0, n_atoms=24)
    spec = pr.Prerelax.from_dict({"model": "nep89-lisic", "md_ps": 0.4, "timestep_fs": 2.0, "max_steps": 400},
                                 "aimd.toml")
    start = pr.start_structure(tmp_path, built, spec, started=False, temperature_k=900.0, seed=4)
    assert start.info["prerelax_md_ps"] == 0.4 and start.info["prerelax_md_temperature_k"] == 900.0
    assert abs(start.info["prerelax_md_mean_t_k"] - 900.0) < 180.0
    assert np.allclose(start.cell.array, built.cell.array)
    relaxed_only = pr.relax_positions(built, pr.Prerelax("nep89-lisic", max_steps=400))
    assert not np.allclose(start.positions, relaxed_only.positions, atol=1e-3)  # the MD moved it
    longer = pr.Prerelax.from_dict({"model": "nep89-lisic", "md_ps": 0.8, "max_steps": 400}, "aimd.toml")
    with pytest.raises(InputError, match="0.4 ps of NEP MD"):
        pr.start_structure(tmp_path, built, longer, started=True, temperature_k=900.0, seed=4)
    assert "md_ps" not in pr.Prerelax("nep89-lisic").to_dict()  # a relaxation alone records as before
    with pytest.raises(Exception, match="md_ps"):
        pr.Prerelax.from_dict({"model": "x", "md_ps": -1}, "aimd.toml")
