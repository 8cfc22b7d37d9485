"""Active-learning selection: `select_by = "ensemble_sigma"` in a reference spec
(`reference.uncertain_pick`, wired into `reference.select_items`).

Small seeded random NEP4 models (tests/random_models.py) stand in for a trained model and its seed
ensemble: different seeds give different forces, so the spread σ is non-zero and varies between
candidates. The expected σ is computed here from calorine's CPUNEP calculator and numpy, and the
expected picks from `sampling.direct_select` on the structural fingerprints, independently of the
code under test. Pools come from the seeded c-Si builder with rattles (no MD), so each test is a
few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_registries import member_path, one_line, write_ensemble_registry
from nepbench import reference
from nepbench.engines.nep_cpu import check_cell
from nepbench.errors import ConfigError
from nepbench.reference import selection as selection_module
from nepbench.sampling import direct_select, structural_fingerprint
from random_models import cpunep_forces

SPECIES = ("Li", "Si", "C")
CLASSIC_KEYS = {"pool", "selected", "selected_fraction", "candidates", "pca_components"}

#: Family 0: 12 candidates, the top quarter (3) kept, DIRECT picks 2 of them. Family 1: 8
#: candidates, 2 kept, fewer than its `select` of 4, so both are taken.
AL_SPEC = """
name = "al-round"
seed = 11
test_fraction = 0.25
selection_version = 2
sampler_model = "al"
select_by = "ensemble_sigma"
uncertain_fraction = 0.25

[[family]]
builder = "c-Si"
motif = "crystalline"
pool = 12
select = 2
rattle_a = [0.02, 0.05, 0.1, 0.15, 0.2, 0.25]

[[family]]
builder = "c-Si"
motif = "strained"
pool = 8
select = 4
strain_range = [-0.05, 0.05]
rattle_a = [0.05, 0.15]
"""

#: A spec as written before `select_by` existed; its sampler model is named but never needed.
DIRECT_SPEC = """
name = "plain-round"
seed = 5
test_fraction = 0.25
selection_version = 2
sampler_model = "no-such-model"

[[family]]
builder = "c-Si"
motif = "crystalline"
pool = 10
select = 3
params = { repeat = [[1, 1, 2]] }
rattle_a = [0.05, 0.1, 0.2]
"""


def _member_path(k: int) -> str:
    return member_path("al", k)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """<root>/models/al/nep.txt (seed 1) with members 1 and 2 (seeds 2, 3) registered as model "al";
    "plain" is the same file without an ensemble. Returns the registry file."""
    return write_ensemble_registry(tmp_path_factory.mktemp("repo"), "al", SPECIES)


@pytest.fixture(scope="module")
def member_files(registry) -> list[Path]:
    root = registry.parent.parent
    return [root / "models" / "al" / "nep.txt", root / _member_path(1), root / _member_path(2)]


@pytest.fixture
def use_registry(registry, monkeypatch) -> Path:
    monkeypatch.setenv("NEPBENCH_REGISTRY", str(registry))
    return registry


def _expected_sigma(frames, member_files) -> np.ndarray:
    """Per frame: sqrt(mean over atoms of σ_i²), σ_i² = mean over x, y, z of the members' variance
    (ddof 1), forces from calorine's CPUNEP."""
    var = np.var(cpunep_forces(member_files, frames), axis=0, ddof=1).mean(axis=1)  # per atom
    edges = np.cumsum([0] + [len(a) for a in frames])
    return np.array([np.sqrt(np.mean(var[a:b])) for a, b in zip(edges[:-1], edges[1:])])


def _write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- the ranking and cut (pure)

@pytest.mark.parametrize("n_pool, fraction, expected", [
    (10, 0.3, 3),    # 0.3 × 10 is 3.0000000000000004 in floats: not rounded up to 4
    (10, 0.25, 3),   # 2.5 → 3: the top quarter holds at least a quarter
    (200, 0.25, 50),
    (3, 0.1, 1),     # never none
    (7, 1.0, 7),
])
def test_the_count_kept_is_the_fraction_rounded_up(n_pool, fraction, expected):
    assert reference.n_uncertain(n_pool, fraction) == expected


@pytest.mark.parametrize("n_pool, fraction", [(10, 0.0), (10, 1.5), (10, float("nan")), (0, 0.5)])
def test_a_fraction_outside_0_1_or_an_empty_pool_is_refused(n_pool, fraction):
    with pytest.raises(ValueError):
        reference.n_uncertain(n_pool, fraction)


def test_the_cut_keeps_the_largest_sigma_and_breaks_ties_by_candidate_index():
    sigma = [0.1, 0.3, 0.3, 0.2, 0.3]
    cut = reference.uncertain_cut(sigma, 0.4)  # 2 of 5: three candidates tie at 0.3
    assert cut.kept == (1, 2) and cut.sigma_cut_ev_per_a == 0.3
    cut = reference.uncertain_cut(sigma, 0.8)  # 4 of 5: the ties and the next one
    assert cut.kept == (1, 2, 3, 4) and cut.sigma_cut_ev_per_a == 0.2
    assert reference.uncertain_cut([0.0, 0.0, 0.0], 0.5).kept == (0, 1)


def test_the_cut_matches_a_sort_and_separates_kept_from_the_rest():
    sigma = np.random.default_rng(3).gamma(2.0, 0.05, size=37)
    cut = reference.uncertain_cut(sigma, 0.3)
    expected = sorted(np.argsort(-sigma, kind="stable")[:12].tolist())  # ⌈0.3 × 37⌉ = 12
    assert list(cut.kept) == expected
    rest = np.setdiff1d(np.arange(37), cut.kept)
    assert sigma[list(cut.kept)].min() == cut.sigma_cut_ev_per_a >= sigma[rest].max()


@pytest.mark.parametrize("sigma", [[0.1, float("nan")], [0.1, -0.2], [[0.1, 0.2]], []])
def test_a_bad_sigma_is_refused(sigma):
    with pytest.raises(ValueError):
        reference.uncertain_cut(sigma, 0.5)


# --------------------------------------------------------------------------- σ from an ensemble

def test_frame_sigma_matches_an_independent_computation(member_files):
    frames = [check_cell(SPECIES, n_side=3, seed=s) for s in (1, 2)] + [check_cell(SPECIES, n_side=4, seed=3)]
    sigma = reference.frame_sigma_ev_per_a(frames, member_files)
    expected = _expected_sigma(frames, member_files)
    assert sigma.shape == (3,) and np.all(expected > 0.01)  # the members do disagree
    np.testing.assert_allclose(sigma, expected, rtol=1e-8)
    with pytest.raises(ValueError, match="at least 2 members"):
        reference.frame_sigma_ev_per_a(frames, member_files[:1])


# --------------------------------------------------------------------------- the spec

@pytest.fixture(scope="module")
def al_round(registry, member_files, tmp_path_factory):
    """(spec, selection, independent σ of each family's pool) of AL_SPEC with the "al" ensemble."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEPBENCH_REGISTRY", str(registry))
        spec = reference.load_spec(_write(tmp_path_factory.mktemp("al"), AL_SPEC))
        chosen = reference.select_items(spec)
    pools = [reference.generate_candidates(spec, family, n) for n, family in enumerate(spec.families)]
    return spec, chosen, [_expected_sigma(pool, member_files) for pool in pools], pools


def test_an_al_round_picks_by_direct_among_the_most_uncertain(al_round):
    spec, chosen, sigmas, pools = al_round
    assert spec.select_by == "ensemble_sigma" and spec.uncertain_fraction == 0.25
    key = reference.family_label(0, spec.families[0])
    entry = chosen.per_family[key]
    sigma = sigmas[0]
    top = sorted(np.argsort(-sigma, kind="stable")[:3].tolist())
    assert entry["uncertain_kept"] == 3 and set(entry["candidates"]) <= set(top)
    # DIRECT on the kept candidates' fingerprints, as the spec's version 2 runs it
    version = spec.selection
    features = np.array([structural_fingerprint(pools[0][i], cutoff_sigmas=version.cutoff_sigmas) for i in top])
    direct = direct_select(features, n_clusters=2, seed=spec.seed, min_feature_std=version.min_feature_std,
                           canonical_order=version.canonical_order)
    assert entry["candidates"] == sorted(top[i] for i in direct.indices)
    assert entry["pca_components"] == int(direct.n_components)
    # the record states the cut and the picks' spread, in eV/Å
    assert entry["sigma_cut_ev_per_a"] == pytest.approx(np.sort(sigma)[-3], abs=2e-6)
    assert entry["sigma_picked_mean_ev_per_a"] == pytest.approx(sigma[entry["candidates"]].mean(), abs=2e-6)
    assert entry["sigma_pool_mean_ev_per_a"] == pytest.approx(sigma.mean(), abs=2e-6)
    assert entry["sigma_cut_ev_per_a"] > np.median(sigma)  # the cut is in the upper part of the pool
    picked = [a for a in chosen.items if a.info["motif"] == "crystalline"]
    assert sorted(a.info["candidate"] for a in picked) == entry["candidates"]
    for atoms in picked:
        assert atoms.info["ensemble_sigma_ev_per_a"] == pytest.approx(sigma[atoms.info["candidate"]], rel=1e-8)


def test_an_al_round_takes_all_kept_when_fewer_than_select_remain(al_round):
    spec, chosen, sigmas, _ = al_round
    entry = chosen.per_family[reference.family_label(1, spec.families[1])]
    top = sorted(np.argsort(-sigmas[1], kind="stable")[:2].tolist())  # ⌈0.25 × 8⌉ = 2 < select 4
    assert (entry["candidates"], entry["selected"], entry["uncertain_kept"]) == (top, 2, 2)
    assert entry["pca_components"] is None
    assert len(chosen.items) == 4 and {a.info["split"] for a in chosen.items} <= {"train", "test"}


def test_the_manifest_records_the_cut_per_family(al_round, tmp_path):
    """`assemble` writes `Selection.per_family` into manifest.json as it is."""
    import json

    spec, chosen, _, _ = al_round
    reference.assemble(chosen.items, {"settings": {}, "version": "none"}, tmp_path / "cache", tmp_path,
                       spec, chosen)
    recorded = json.loads((tmp_path / "manifest.json").read_text())["selection"]["per_family"]
    assert recorded == json.loads(json.dumps(chosen.per_family))
    assert all({"sigma_cut_ev_per_a", "uncertain_kept", "sigma_picked_mean_ev_per_a"} <= set(e)
               for e in recorded.values())


def test_default_mode_selects_as_direct_over_the_whole_pool(tmp_path):
    """No `select_by` (as every spec before it) and `select_by = "direct"` select the same, DIRECT
    over the whole pool, record nothing new, and resolve no sampler model."""
    spec = reference.load_spec(_write(tmp_path, DIRECT_SPEC))
    explicit = reference.load_spec(_write(tmp_path, DIRECT_SPEC.replace("[[family]]", 'select_by = "direct"\n\n'
                                                                        "[[family]]"), "direct.toml"))
    assert spec.select_by == explicit.select_by == "direct"
    chosen, again = reference.select_items(spec), reference.select_items(explicit)
    pool = reference.generate_candidates(spec, spec.families[0], 0)
    version = spec.selection
    features = np.array([structural_fingerprint(a, cutoff_sigmas=version.cutoff_sigmas) for a in pool])
    direct = direct_select(features, n_clusters=3, seed=spec.seed, min_feature_std=version.min_feature_std,
                           canonical_order=version.canonical_order)
    (entry,) = chosen.per_family.values()
    assert entry["candidates"] == direct.indices.tolist() and set(entry) == CLASSIC_KEYS
    assert chosen.per_family == again.per_family
    assert [a.info["split"] for a in chosen.items] == [a.info["split"] for a in again.items]
    assert not any("ensemble_sigma_ev_per_a" in a.info for a in chosen.items)


@pytest.mark.parametrize("sampler", ["plain", "models/al/nep.txt"])  # registered without ensemble; a user file
def test_a_sampler_model_without_an_ensemble_is_one_line_naming_the_spec(use_registry, tmp_path, monkeypatch,
                                                                         sampler):
    sampler = str(use_registry.parent.parent / sampler) if "/" in sampler else sampler
    path = _write(tmp_path, AL_SPEC.replace('sampler_model = "al"', f'sampler_model = "{sampler}"'))
    spec = reference.load_spec(path)
    monkeypatch.setattr(selection_module, "generate_candidates",
                        lambda *a, **k: pytest.fail("a pool was made before the ensemble was checked"))
    with pytest.raises(ConfigError) as info:
        reference.select_items(spec)
    message = one_line(info)
    assert message.startswith(f"{path}: ") and "at least 2 members" in message


@pytest.mark.parametrize("edit, phrase", [
    (('select_by = "ensemble_sigma"', 'select_by = "sigma"'), "unknown select_by 'sigma'"),
    (("uncertain_fraction = 0.25", "uncertain_fraction = 0"), "uncertain_fraction must be in (0, 1]"),
    (("uncertain_fraction = 0.25", "uncertain_fraction = 1.5"), "uncertain_fraction must be in [0.0, 1.0]"),
    (('select_by = "ensemble_sigma"', 'select_by = "direct"'), "uncertain_fraction applies to select_by"),
    (('sampler_model = "al"\n', ""), "needs sampler_model"),
])
def test_a_bad_selection_mode_is_refused_when_the_spec_loads(tmp_path, edit, phrase):
    path = _write(tmp_path, AL_SPEC.replace(*edit))
    with pytest.raises(ConfigError) as info:
        reference.load_spec(path)
    assert str(info.value).startswith(f"{path}: ") and phrase in str(info.value)
