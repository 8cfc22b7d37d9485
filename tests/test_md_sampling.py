"""Reference v2: MD-sampled candidate pools, NEP-descriptor DIRECT, split by origin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from nepbench import md_pool, md_sampling, reference
from nepbench.errors import ConfigError, EngineError

ROOT = Path(__file__).resolve().parents[1]


def test_sampling_protocol_is_validated() -> None:
    ok = md_sampling.MDSampling.from_dict({"runs": 3, "temperature_k": [300, 900], "sample_ps": 1.0}, "f.toml")
    assert ok.snapshots_per_run == 10 and ok.temperature_for(1) == 900.0 and ok.temperature_for(2) == 300.0
    with pytest.raises(ConfigError, match="f.toml: .*snapshot_fs must be >= 50"):
        md_sampling.MDSampling.from_dict({"runs": 1, "temperature_k": 300, "sample_ps": 1, "snapshot_fs": 20}, "f.toml")
    with pytest.raises(ConfigError, match="unknown key"):
        md_sampling.MDSampling.from_dict({"runs": 1, "temperature_k": 300, "sample_ps": 1, "tmax": 2}, "f.toml")
    with pytest.raises(ConfigError, match="melt_k must exceed"):
        md_sampling.MDSampling.from_dict({"runs": 1, "temperature_k": 900, "sample_ps": 1, "melt_k": 800,
                                          "melt_ps": 1}, "f.toml")


def test_quench_temperature_and_distance_checks() -> None:
    assert md_sampling.quench_temperatures(2000.0, 1000.0, 4) == [1750.0, 1500.0, 1250.0, 1000.0]
    assert md_sampling.temperature_problem(1100.0, 1000.0) is None
    assert "more than 50 %" in md_sampling.temperature_problem(1600.0, 1000.0)
    assert md_sampling.temperature_problem(float("nan"), 1000.0)
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    assert md_sampling.min_pair_distance_a(si) == pytest.approx(5.43 * np.sqrt(3) / 4, rel=1e-9)


def test_origin_test_runs_keep_both_splits() -> None:
    rng = np.random.default_rng(0)
    assert len(reference.origin_test_runs(4, 0.25, rng)) == 1
    assert len(reference.origin_test_runs(2, 0.05, rng)) == 1  # at least one test run
    assert len(reference.origin_test_runs(2, 0.9, rng)) == 1   # at least one train run
    assert reference.origin_test_runs(1, 0.5, rng) <= {0}


class _Exploding:
    """An engine whose MD blows up for one seed."""

    def __init__(self, real, bad_seed: int) -> None:
        self.real, self.bad_seed = real, bad_seed

    def calculator(self):
        return self.real.calculator()

    def md(self, atoms, protocol, source=""):
        if protocol.seed == self.bad_seed + 11:  # the sampling stage of that run
            raise EngineError(f"{source}: MD unstable at step 3: T 1e+05 K")
        return self.real.md(atoms, protocol, source=source)


@pytest.fixture(scope="module")
def nep_engine():
    from nepbench.engines.nep_cpu import NepCpuEngine

    return NepCpuEngine("nep89-lisic", threads=1)


def test_family_pool_leaves_out_a_blown_up_run_by_name(nep_engine) -> None:
    sampling = md_sampling.MDSampling(runs=2, temperature_k=(600.0,), sample_ps=0.1, snapshot_fs=50,
                                      equil_ps=0.0, timestep_fs=2.0, cell_relax=False)
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    pool, failures = md_sampling.family_pool([(7, si), (8, si)], sampling, _Exploding(nep_engine, 8), "fam")
    assert [f.origin for f in failures] == ["fam#run1"] and "unstable" in failures[0].reason, failures
    assert len(pool) == 2 and {a.info["origin"] for a in pool} == {"fam#run0"}
    assert all(a.info["temperature_k"] == 600.0 for a in pool)
    times = [a.info["time_ps"] for a in pool]
    assert times == pytest.approx([0.05, 0.1])
    assert not np.allclose(pool[0].positions, pool[1].positions)  # MD moved the atoms


TINY_SPEC = """
name = "tiny-v2"
seed = 5
test_fraction = 0.25
selection_version = 2
descriptor = "nep"
sampler_model = "nep89-lisic"
out_dir = "out"
[[family]]
builder = "c-Si"
motif = "crystalline"
select = 3
md = { runs = 2, temperature_k = [300, 900], timestep_fs = 2, equil_ps = 0.0, sample_ps = 0.2, snapshot_fs = 50, cell_relax = false }
[[family]]
builder = "c-Si"
motif = "surface"
select = 3
md = { runs = 3, temperature_k = [600], vacuum_a = 12, strain = [0.05], timestep_fs = 2, equil_ps = 0.0, sample_ps = 0.2, snapshot_fs = 50, cell_relax = false }
"""


def test_tiny_v2_selection_splits_by_origin_and_caches_pools(tmp_path, monkeypatch) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(TINY_SPEC)
    spec = reference.load_spec(spec_path)
    assert [f.pool for f in spec.families] == [8, 12]
    selection = reference.select_items(spec)
    assert len(selection.items) == 6 and selection.pool_size == 20
    for key, entry in selection.per_family.items():
        runs_by_split: dict[str, set] = {}
        for atoms in selection.items:
            if f"{atoms.info['motif']}/{atoms.info['builder']}" == key.split(" ", 1)[1]:
                runs_by_split.setdefault(atoms.info["split"], set()).add(atoms.info["run"])
        # every pick of a test run is test, every pick of a train run is train
        assert not (runs_by_split.get("test", set()) & runs_by_split.get("train", set()))
        assert set(entry["test_runs"]) >= runs_by_split.get("test", set())
        assert entry["sampler_model"] == "nep89-lisic" and len(entry["sampler_sha256"]) == 64
        assert entry["selected_fraction"] == pytest.approx(3 / entry["pool"], abs=1e-4)
    slab = [a for a in selection.items if a.info["motif"] == "surface"][0]
    assert slab.cell[2, 2] > slab.positions[:, 2].max() - slab.positions[:, 2].min() + 10  # vacuum kept
    assert slab.info["strain"] == 0.05
    # a second selection reads the cached pools: no MD runs, same picks
    monkeypatch.setattr(md_sampling, "family_pool", lambda *a, **k: pytest.fail("pool made again"))
    again = reference.select_items(reference.load_spec(spec_path))
    assert [a.info["candidate"] for a in again.items] == [a.info["candidate"] for a in selection.items]
    assert [a.info["split"] for a in again.items] == [a.info["split"] for a in selection.items]


def test_spec_needs_sampler_for_md_families(tmp_path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(TINY_SPEC.replace('sampler_model = "nep89-lisic"\n', ""))
    with pytest.raises(ConfigError, match="spec.toml: .*sampler_model"):
        reference.load_spec(path)
    path.write_text(TINY_SPEC.replace('out_dir = "out"', 'out_dir = "../x"'))
    with pytest.raises(ConfigError, match="out_dir"):
        reference.load_spec(path)


def test_committed_v2_spec_meets_the_size_targets() -> None:
    spec = reference.load_spec(ROOT / "reference_data" / "spec-v2.toml")
    assert sum(f.select for f in spec.families) >= 300
    assert {f.motif for f in spec.families} == set(reference.MOTIFS)
    assert all(f.md is not None and f.md.runs >= 2 and f.md.snapshot_fs >= 50 for f in spec.families)
    expected_test = sum(f.select * len(reference.origin_test_runs(f.md.runs, spec.test_fraction,
                                                                  np.random.default_rng(0))) / f.md.runs
                        for f in spec.families)
    assert expected_test >= 60
