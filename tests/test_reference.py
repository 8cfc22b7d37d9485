"""The reference-set pipeline: DIRECT selection, resumable labelling, manifest and verify.

A fake engine stands in for CP2K here (the real engine is tested in test_cp2k_engine.py and in the
`cp2k`-marked build below), so resumption can be checked by counting calls.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nepbench import reference
from nepbench.engines.base import Labels
from nepbench.engines.cp2k import LABEL_KP_SETTINGS, LABEL_TUNED_SETTINGS
from nepbench.errors import ConfigError, InputError, SCFNotConverged

SPEC = """
name = "tiny"
seed = 5
test_fraction = 0.25
cp2k_preset = "label"

[[family]]
builder = "c-Si"
motif = "crystalline"
pool = 12
select = 4
rattle_a = 0.1

[[family]]
builder = "a-Si"
motif = "amorphous"
pool = 12
select = 4
"""


@dataclass(frozen=True)
class FakeSettings:
    cutoff_ry: float = 100.0

    def to_dict(self):
        return {"cutoff_ry": self.cutoff_ry}


class FakeEngine:
    """Deterministic labels from positions; counts calls; can fail one item or stop after n."""

    def __init__(self, fail_on: int | None = None, interrupt_after: int | None = None):
        self.settings = FakeSettings()
        self.calls = 0
        self.fail_on = fail_on
        self.interrupt_after = interrupt_after

    def version(self) -> str:
        return "fake 1.0"

    def single_point(self, atoms):
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise SCFNotConverged("SCF run NOT converged after 60 steps")
        pos = atoms.positions
        return Labels(energy_ev=float(-np.sum(np.cos(pos))), forces_ev_per_a=-np.sin(pos),
                      stress_ev_per_a3=np.zeros(6), wall_s=0.01)


@pytest.fixture
def spec(tmp_path: Path) -> reference.ReferenceSpec:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return reference.load_spec(path)


def build(spec, engine, out_dir):
    selection = reference.select_items(spec)
    info = {"settings": engine.settings.to_dict(), "version": engine.version()}
    try:
        report = reference.label_items(selection.items, engine, out_dir / "cache")
    finally:
        reference.assemble(selection.items, info, out_dir / "cache", out_dir, spec, selection)
    return selection, report


def test_selection_is_deterministic_and_split(spec):
    first, second = reference.select_items(spec), reference.select_items(spec)
    assert len(first.items) == 8 and first.pool_size == 24
    assert first.selected_fraction == pytest.approx(8 / 24)
    for a, b in zip(first.items, second.items):
        assert np.array_equal(a.positions, b.positions) and a.info["split"] == b.info["split"]
    splits = [a.info["split"] for a in first.items]
    assert splits.count("test") == 2  # 25 % of 4 per family, rounded


def test_killed_build_resumes_without_recomputing(spec, tmp_path):
    out = tmp_path / "dft"
    with pytest.raises(KeyboardInterrupt):
        build(spec, FakeEngine(interrupt_after=3), out)
    assert len(list((out / "cache").glob("*.json.gz"))) == 3
    manifest = reference.verify(out)
    assert manifest.ok and manifest.n_frames == 3  # what finished was assembled
    engine = FakeEngine()
    _, report = build(spec, engine, out)
    assert engine.calls == 5 and report.skipped_cached == 3
    again = FakeEngine()
    build(spec, again, out)
    assert again.calls == 0
    result = reference.verify(out)
    assert result.ok and result.n_frames == 8 and result.n_files == 2


def test_a_cached_item_takes_its_motif_from_the_spec_as_it_is_now(spec, tmp_path):
    """The cache key is the structure, the settings and CP2K's version: a family moved to another
    motif is a cache hit, and its frames must move with it (they stayed in the old motif's file,
    and the old file stayed in the manifest)."""
    out = tmp_path / "dft"
    build(spec, FakeEngine(), out)
    before = json.loads((out / "manifest.json").read_text())
    assert set(before["files"]) == {"amorphous.extxyz.xz", "crystalline.extxyz.xz"}
    Path(spec.path).write_text(SPEC.replace('motif = "amorphous"', 'motif = "strained"'))
    moved = reference.load_spec(spec.path)
    engine = FakeEngine()
    selection, _ = build(moved, engine, out)
    assert engine.calls == 0  # every label came from the cache
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"crystalline.extxyz.xz", "strained.extxyz.xz"}
    assert not (out / "amorphous.extxyz.xz").exists()  # the stale motif file went with its entry
    frames = reference.load_frames(out)
    assert sorted(f.info["motif"] for f in frames) == sorted(a.info["motif"] for a in selection.items)
    assert reference.verify(out).ok


def test_a_failed_write_leaves_the_earlier_reference_set_whole(spec, tmp_path, monkeypatch):
    """Frame files and manifest are one set: a kill before the manifest left files it did not list."""
    from nepbench import files

    out = tmp_path / "dft"
    engine = FakeEngine(interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        build(spec, engine, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real = files._staged
    monkeypatch.setattr(files, "_staged", lambda target, data: (_ for _ in ()).throw(OSError(28, "disk full"))
                        if target.name == "manifest.json" else real(target, data))
    with pytest.raises(OSError):
        build(spec, FakeEngine(), out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert reference.verify(out).ok and reference.verify(out).n_frames == 3


def test_two_builders_share_the_cache_without_labelling_an_item_twice(spec, tmp_path):
    import fcntl

    out = tmp_path / "dft"
    selection = reference.select_items(spec)
    engine = FakeEngine()
    key = reference.item_hash(selection.items[1], engine.settings.to_dict(), engine.version())
    (out / "cache").mkdir(parents=True)
    with open(out / "cache" / f".{key[:24]}.lock", "a") as held:  # another builder is on item 1
        fcntl.flock(held, fcntl.LOCK_EX)
        report = reference.label_items(selection.items, engine, out / "cache")
    assert (report.labelled, report.skipped_busy, engine.calls) == (7, 1, 7)
    assert not reference.labelling.cache_path(out / "cache", key).exists()
    assert len(list((out / "cache").glob(".*.lock"))) == 1  # only the other builder's lock is left
    later = FakeEngine()
    report = reference.label_items(selection.items, later, out / "cache")
    assert (report.labelled, report.skipped_cached, later.calls) == (1, 7, 1)
    assert not list((out / "cache").glob(".*.lock"))


def test_scf_failure_is_logged_and_left_out(spec, tmp_path):
    out = tmp_path / "dft"
    _, report = build(spec, FakeEngine(fail_on=2), out)
    assert report.failed == 1 and report.labelled == 7
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    assert manifest["n_frames"] == 7 and manifest["n_failed"] == 1
    assert "NOT converged" in manifest["failed"][0]["error"]
    again = FakeEngine()  # a later build leaves it out and says so, rather than counting it as cached
    _, later = build(spec, again, out)
    assert (again.calls, later.skipped_failed, later.skipped_cached, later.failed) == (0, 1, 7, 0)


def test_a_crash_that_is_not_an_scf_failure_is_tried_again_next_build(spec, tmp_path):
    """MPI that did not start, no output, a killed rank: cached as failed, one such hiccup removed
    the items from every later build, which then reported "failed 0"."""
    from nepbench.errors import EngineCrashed

    class Hiccup(FakeEngine):
        def single_point(self, atoms):
            if self.calls == 1:
                self.calls += 1
                raise EngineCrashed("cp2k wrote no output (ORTE was unable to start daemons)")
            return super().single_point(atoms)

    out = tmp_path / "dft"
    _, first = build(spec, Hiccup(), out)
    assert first.failed == 1 and first.labelled == 7 and not list((out / "cache").glob("*failed*"))
    engine = FakeEngine()
    _, second = build(spec, engine, out)
    assert (engine.calls, second.labelled, second.skipped_cached, second.failed) == (1, 1, 7, 0)
    assert reference.verify(out).n_frames == 8


def test_verify_catches_a_changed_frame(spec, tmp_path):
    out = tmp_path / "dft"
    build(spec, FakeEngine(), out)
    path = out / "amorphous.extxyz.xz"
    text = lzma.decompress(path.read_bytes()).decode().splitlines()
    fields = text[2].split()
    fields[1] = f"{float(fields[1]) + 0.001:.8f}"  # move one atom by 1 mÅ
    text[2] = " ".join(fields)
    path.write_bytes(lzma.compress(("\n".join(text) + "\n").encode()))
    result = reference.verify(out)
    assert not result.ok
    assert any("frame 0 sha256" in p for p in result.problems)
    assert any("file sha256" in p for p in result.problems)
    with pytest.raises(InputError):
        reference.load_frames(out)


def _swap_splits(frames: list[dict]) -> None:
    """Swap the split of the first train and the first test frame listed."""
    train = next(f for f in frames if f["split"] == "train")
    test = next(f for f in frames if f["split"] == "test")
    train["split"], test["split"] = "test", "train"


@pytest.mark.parametrize("tamper, phrase", [
    (lambda m: m["files"].pop("crystalline.extxyz.xz"), "crystalline.extxyz.xz: not in the manifest"),
    (lambda m: m["files"].clear(), "lists no frame files"),
    (lambda m: m["files"]["amorphous.extxyz.xz"].update(n_test=99), "manifest counts"),
    (lambda m: m["files"]["amorphous.extxyz.xz"]["frames"][0].update(
        split="test" if m["files"]["amorphous.extxyz.xz"]["frames"][0]["split"] == "train" else "train"),
     "manifest counts"),
    (lambda m: m.update(n_frames=m["n_frames"] + 1), "n_frames"),
    # a train and a test frame swapped in the list: the counts agree, the frames do not
    (lambda m: _swap_splits(m["files"]["amorphous.extxyz.xz"]["frames"]),
     "amorphous.extxyz.xz: frame "),
    (lambda m: m["files"]["crystalline.extxyz.xz"]["frames"][1].update(builder="a-C"),
     "frame 1's builder 'a-C' in the manifest"),
    (lambda m: m["files"]["crystalline.extxyz.xz"]["frames"][0].update(hash="0" * 24), "hash '000000"),
    (lambda m: m["selection"].update(selected=3), "more than the 3 the selection records"),
    (lambda m: m.update(n_failed=2), "n_failed 2 but it lists 0"),
])
def test_verify_holds_the_manifest_to_the_files(spec, tmp_path, tamper, phrase):
    """A manifest edited to drop a file, or to change counts or a frame's split, no longer
    verifies (the files' own hashes would not notice: they are unchanged)."""
    import json

    out = tmp_path / "dft"
    build(spec, FakeEngine(), out)
    manifest = json.loads((out / "manifest.json").read_text())
    tamper(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = reference.verify(out)
    assert not result.ok and any(phrase in p for p in result.problems), result.problems


def test_verify_cli_exit_codes(spec, tmp_path, capsys):
    from nepbench.cli import main

    out = tmp_path / "dft"
    build(spec, FakeEngine(), out)
    assert main(["reference", "verify", str(out)]) == 0
    (out / "crystalline.extxyz.xz").unlink()
    assert main(["reference", "verify", str(out)]) == 1
    assert "missing" in capsys.readouterr().out
    shutil.rmtree(out)
    assert main(["reference", "verify", str(out)]) == 1
    assert "manifest not found" in capsys.readouterr().err


@pytest.mark.parametrize("content, phrase", [
    (b"[]", "expected a JSON object, got list"),
    (b'{"files": []}', "'files' must be an object"),
    (b'{"files": null}', "'files' must be an object"),
    (b'{"files": {"a.extxyz.xz": 3}}', "files entry 'a.extxyz.xz' needs"),
    (b'{"files": {"a.extxyz.xz": {"sha256": "x", "frames": [1]}}}', "files entry 'a.extxyz.xz' needs"),
    (b'{"files": {"../a.extxyz.xz": {"sha256": "x", "frames": []}}}', "'../a.extxyz.xz' is not a plain file name"),
    (b'{"files": {"sub/a.extxyz.xz": {"sha256": "x", "frames": []}}}', "'sub/a.extxyz.xz' is not a plain file name"),
    (b"{not json", "malformed JSON"),
    (b'{"name": "\xe9"}', "not UTF-8"),
])
@pytest.mark.parametrize("command", ["verify", "show"])
def test_a_manifest_of_another_shape_is_one_line_naming_it(tmp_path, capsys, content, phrase, command):
    from nepbench.cli import main

    out = tmp_path / "dft"
    out.mkdir()
    (out / "manifest.json").write_bytes(content)
    assert main(["reference", command, str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / "manifest.json") in err[0] and phrase in err[0], err
    assert "unexpected" not in err[0]


@pytest.mark.parametrize("content, phrase", [
    (b"[]", "'runs' object"), (b'{"runs": {"a": {"files": 3}}}', "run 'a' needs a 'files' object"),
    (b"\xff\xfe", "not UTF-8")])
def test_an_aimd_manifest_of_another_shape_is_one_line_naming_it(tmp_path, capsys, content, phrase):
    from nepbench.cli import main

    (tmp_path / "aimd").mkdir()
    (tmp_path / "dft").mkdir()
    (tmp_path / "dft" / "manifest.json").write_text('{"files": {}, "n_frames": 0}')  # empty, of the right shape
    (tmp_path / "aimd" / "manifest.json").write_bytes(content)
    (tmp_path / "aimd.toml").write_text("")
    assert main(["reference", "verify", str(tmp_path / "dft")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "aimd/manifest.json" in err[0] and phrase in err[0], err


@pytest.mark.parametrize("dft, aimd_text, where", [
    ('{"files": {}, "selection": 5}', None, "dft/manifest.json"),
    ('{"files": {}}', '{"runs": {"a": {"files": {}}}}', "aimd/manifest.json"),
])
def test_show_names_the_manifest_whose_fields_it_cannot_read_and_prints_nothing(tmp_path, capsys, dft, aimd_text, where):
    from nepbench.cli import main

    (tmp_path / "dft").mkdir()
    (tmp_path / "dft" / "manifest.json").write_text(dft)
    if aimd_text:
        (tmp_path / "aimd").mkdir()
        (tmp_path / "aimd" / "manifest.json").write_text(aimd_text)
    assert main(["reference", "show", str(tmp_path / "dft")]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and where in err[0] and "missing or of another type" in err[0], err
    assert captured.out == ""


@pytest.mark.parametrize("edit", [
    lambda t: t.replace('cp2k_preset = "label"', 'cp2k_preset = ["label"]'),
    lambda t: t.replace('builder = "', 'builder = ["', 1).replace('"\nmotif', '"]\nmotif', 1),
])
def test_a_spec_with_a_list_where_a_name_goes_is_one_line(tmp_path, edit):
    path = tmp_path / "spec.toml"
    path.write_text(edit(SPEC))
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        reference.load_spec(path)


def test_committed_reference_set_verifies():
    root = Path(__file__).resolve().parents[1] / "reference_data" / "dft"
    if not (root / "manifest.json").exists():
        pytest.skip("no committed reference set yet")
    result = reference.verify(root)
    assert result.ok, result.problems
    frames = reference.load_frames(root)
    motifs = {f.info["motif"] for f in frames}
    assert motifs <= set(reference.MOTIFS)
    assert {f.info["split"] for f in frames} == {"train", "test"}


def test_missing_cp2k_is_one_line_and_keeps_results(spec, tmp_path, monkeypatch, capsys):
    from nepbench.cli import main

    out = Path(spec.path).parent / "dft"
    build(spec, FakeEngine(), out)
    before = (out / "manifest.json").read_bytes()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["reference", "build", spec.path]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cp2k.psmp not found" in err[0] and "apt-get install cp2k" in err[0]
    assert (out / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("preset, warned", [("label-tuned", True), ("label-kp", False)])
def test_build_warns_when_its_preset_labels_at_gamma_only(tmp_path, capsys, preset, warned):
    """Γ-only labels are far from k-point converged in the reference cells (docs/cp2k_settings.md,
    "k-point study"): a spec whose preset samples Γ alone is told so; a k-point preset is not."""
    from nepbench.cli import main

    path = tmp_path / "spec.toml"
    path.write_text(SPEC.replace('cp2k_preset = "label"', f'cp2k_preset = "{preset}"'))
    assert main(["reference", "build", str(path), "--select-only"]) == 0
    out = capsys.readouterr().out
    assert ("labels at Γ only" in out) is warned, out
    assert "DIRECT kept" in out


def test_narrow_cells_are_counted_by_builder():
    """Γ-only labels are not k-point converged in cells narrower than ~6 Å (docs/cp2k_settings.md)."""
    from ase.build import bulk

    from nepbench.reference import narrow_cells

    flat = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 1))  # 10.86 × 10.86 × 5.43 Å
    flat.info["builder"] = "c-Si"
    wide = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    wide.info["builder"] = "c-Si"
    lic6 = flat.copy()
    lic6.info["builder"] = "LiC6"
    assert narrow_cells([flat, wide, lic6, flat]) == {"c-Si": 2, "LiC6": 1}
    assert narrow_cells([flat], min_width_a=5.0) == {}


def test_the_manifest_counts_frames_by_the_input_template_they_were_labelled_with(spec, tmp_path, monkeypatch):
    """The cache key does not see the CP2K input writer; each label keeps the hash of the input
    the writer made for a fixed probe cell, and the manifest counts frames per hash."""
    import json

    from nepbench.engines.cp2k import LABEL_SETTINGS

    first = reference.input_template_sha256(LABEL_SETTINGS)
    assert first and reference.input_template_sha256(FakeSettings()) is None
    out = tmp_path / "dft"
    with pytest.raises(KeyboardInterrupt):
        build(spec, FakeEngine(interrupt_after=3), out)  # stand-in settings: nothing recorded
    monkeypatch.setattr(reference.labelling, "input_template_sha256", lambda settings: "t" * 64)  # the writer changed
    build(spec, FakeEngine(), out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cp2k"]["frames_by_input_template"] == {"not recorded": 3, "t" * 64: 5}
    assert reference.verify(out).ok
    text = lzma.decompress((out / "amorphous.extxyz.xz").read_bytes()).decode()
    assert "input_template" not in text  # kept in the cache and manifest, not in the frame files


# --------------------------------------------------------------------------- selection versions, spec checks

TWINS = """
name = "twins"
seed = 5
{version}

[[family]]
builder = "a-Si"
motif = "amorphous"
pool = 3
select = 3
params = {{ n_atoms = 16 }}

[[family]]
builder = "a-Si"
motif = "strained"
pool = 3
select = 3
params = {{ n_atoms = 16 }}
strain_range = [-0.02, 0.02]
"""


def _twin_spec(tmp_path, version_line):
    path = tmp_path / "twins.toml"
    path.write_text(TWINS.format(version=version_line))
    return reference.load_spec(path)


def test_version_1_seeds_families_alike_and_version_2_apart(tmp_path):
    """Version 1 (the committed set's) seeds candidate i of every family alike, so a strained family's
    candidate is the amorphous one strained; version 2 seeds each family on its own."""
    old = _twin_spec(tmp_path, "")
    new = _twin_spec(tmp_path, "selection_version = 2")
    assert old.selection_version == 1 and new.selection_version == reference.LATEST_SELECTION_VERSION == 2
    for spec, twins in ((old, True), (new, False)):
        amorphous = reference.generate_candidates(spec, spec.families[0], 0)
        strained = reference.generate_candidates(spec, spec.families[1], 1)
        for a, b in zip(amorphous, strained):
            scaled_back = b.positions @ np.linalg.solve(b.cell.array, a.cell.array)  # undo the strain
            assert bool(np.abs(scaled_back - a.positions).max() < 1e-6) is twins
    seeds = {reference.candidate_seed(new, f, i) for f in range(2) for i in range(3)}
    assert len(seeds) == 6 and all(0 <= s < 2**32 for s in seeds)


def test_manifest_records_the_selection_version(spec, tmp_path):
    _, _ = build(spec, FakeEngine(), tmp_path / "out")
    import json

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["selection"]["selection_version"] == 1


@pytest.mark.parametrize("edit, phrase", [
    (lambda t: t.replace("test_fraction = 0.25", "test_fraction = 1.5"), "test_fraction must be in [0.0, 0.9]"),
    (lambda t: t.replace("select = 4\n", "select = 0\n", 1), "family #0 select must be in [1, 12]"),
    (lambda t: t.replace("pool = 12\n", 'pool = "four"\n', 1), "family #0 pool must be an integer"),
    (lambda t: t.replace("select = 4\n", "select = 13\n", 1), "family #0 select must be in [1, 12]"),
    (lambda t: t.replace("rattle_a = 0.1", "rattle_a = -0.1"), "family #0 rattle_a must be >= 0.0"),
    (lambda t: t.replace('cp2k_preset = "label"', 'cp2k_preset = "label"\nselection_version = 7'),
     "selection_version 7 unknown"),
    (lambda t: t + 'strain_range = [0.1]\n', "family #1 strain_range must be [min, max]"),
    (lambda t: t.replace("seed = 5", "seed = 5.5"), "seed must be an integer"),
    (lambda t: t.replace('cp2k_preset = "label"', 'cp2k_preset = "fast"'), "unknown cp2k_preset 'fast'"),
    (lambda t: t.replace("seed = 5", "seed = 5\nsed = 5"), "unknown key(s) sed"),
    (lambda t: t.replace("select = 4\n", "select = 4\nselcet = 4\n", 1), "family #0 has unknown key(s) selcet"),
    (lambda t: t.replace('builder = "', 'builder = "x', 1), "family #0: unknown builder 'x"),
    # refused when the spec loads, not as a traceback from the builder or numpy while selecting
    (lambda t: t + 'params = "x"\n', "family #1: builder 'a-Si': params must be a table, got 'x'"),
    (lambda t: t + 'params = { n_atom = 16 }\n', "family #1: builder 'a-Si' takes no parameter(s) n_atom"),
    (lambda t: t + 'params = { n_atoms = "many" }\n', "parameter n_atoms must be an integer, got 'many'"),
    (lambda t: t + 'strain_range = [0.1, -0.1]\n', "family #1 strain_range must be [min, max] with min <= max"),
    (lambda t: 'family = 3\n' + t[:t.index("[[family]]")], "family must be an array of tables"),
])
def test_malformed_spec_is_one_line_naming_file_and_family(tmp_path, edit, phrase):
    from nepbench.errors import ConfigError

    path = tmp_path / "spec.toml"
    path.write_text(edit(SPEC))
    with pytest.raises(ConfigError) as info:
        reference.load_spec(path)
    assert str(info.value).startswith(f"{path}: ") and phrase in str(info.value)


@pytest.mark.parametrize("number", [2, 7, 11])  # LiC6, a-LixSi, Si|C-lithiated: most changed by version 2
def test_committed_spec_still_selects_the_committed_frames(number):
    """Version 1 is kept so that the committed reference set is what its spec selects: the
    selection code path (`pick_family`, with the spec's version and the manifest's picks for its
    ties) gives the manifest's candidates."""
    import json

    spec = reference.load_spec(reference.DEFAULT_ROOT / "spec.toml")
    manifest = json.loads((reference.DEFAULT_ROOT / "dft" / "manifest.json").read_text())
    assert spec.selection_version == 1
    key = reference.family_label(number, spec.families[number])
    recorded = reference.recorded_picks(reference.DEFAULT_ROOT / "dft")[key]
    _, picked, components = reference.pick_family(spec, number, recorded)
    assert picked == manifest["selection"]["per_family"][key]["candidates"]
    assert components == manifest["selection"]["per_family"][key]["pca_components"]


def test_committed_picks_survive_last_bit_changes_in_the_fingerprints():
    """Version 1 leaves 2-member-cluster ties to float rounding: fingerprints changed in their last
    bit (as another BLAS or CPU may compute them) move picks of Si|C-lithiated; the manifest's picks,
    given as ties' winners, hold them."""
    from nepbench.sampling import direct_select, structural_fingerprint

    spec = reference.load_spec(reference.DEFAULT_ROOT / "spec.toml")
    number = 11
    family = spec.families[number]
    recorded = reference.recorded_picks(reference.DEFAULT_ROOT / "dft")[reference.family_label(number, family)]
    pool = reference.generate_candidates(spec, family, number)
    features = np.array([structural_fingerprint(a) for a in pool])
    moved = 0
    for seed in range(3):
        ulp = np.random.default_rng(seed).choice([-1, 0, 1], size=features.shape) * np.finfo(float).eps
        perturbed = features * (1 + ulp)
        plain = direct_select(perturbed, n_clusters=family.select, seed=spec.seed).indices.tolist()
        moved += len(set(plain) - set(recorded))
        kept = direct_select(perturbed, n_clusters=family.select, seed=spec.seed, prefer=recorded)
        assert kept.indices.tolist() == recorded
    assert moved > 0  # the perturbation does reach the ties


def test_recorded_picks_from_a_manifest(tmp_path):
    assert reference.recorded_picks(tmp_path) == {}  # no set built there yet
    manifest = {"files": {}, "selection": {"per_family": {"00 amorphous/a-Si": {"candidates": [3, 9]}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert reference.recorded_picks(tmp_path) == {"00 amorphous/a-Si": [3, 9]}
    manifest["selection"]["per_family"]["00 amorphous/a-Si"]["candidates"] = ["3"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError) as info:
        reference.recorded_picks(tmp_path)
    assert str(tmp_path / "manifest.json") in str(info.value) and "candidates" in str(info.value)


def test_the_pool_map_places_the_recorded_picks_and_their_labels(spec, tmp_path):
    """`nepbench train`'s PCA map of the DIRECT pool reads the picks through the same parser as the
    build's tie rule, by family label, and finds each labelled frame among them by its cache key."""
    from nepbench.pool_map import pool_map

    out = tmp_path / "out"
    build(spec, FakeEngine(), out)
    manifest = reference.load_manifest(out / "manifest.json")
    frames = reference.load_frames(out)
    pool = pool_map(tmp_path / "spec.toml", manifest, frames)
    assert (pool.pool_size, pool.n_selected, pool.n_labelled) == (24, 8, 8)
    for label, candidates in reference.recorded_picks(out).items():
        rows = [i for i, family in enumerate(pool.family) if family == label]
        assert len(rows) == 12 and [i for i in rows if pool.selected[i]] == [rows[c] for c in sorted(candidates)]
    assert sorted(pool.split[i] for i in np.flatnonzero(pool.selected)) == sorted(f.info["split"] for f in frames)
    assert pool_map(tmp_path / "spec.toml", manifest).n_labelled == 0  # no frames: picks only
    per_family = manifest["selection"]["per_family"]
    per_family["01 amorphous/a-C"] = per_family.pop("01 amorphous/a-Si")
    with pytest.raises(InputError, match="no selection record for spec family '01 amorphous/a-Si'"):
        pool_map(tmp_path / "spec.toml", manifest, frames)
    per_family["01 amorphous/a-Si"] = {"candidates": ["3"]}
    with pytest.raises(InputError, match="'candidates' list of integers"):
        pool_map(tmp_path / "spec.toml", manifest, frames)


def test_manifest_records_each_frames_dft_force_rms_and_show_prints_it(spec, tmp_path, capsys):
    """FakeEngine's forces are −sin(positions): the manifest's RMS is theirs, and `show` prints the
    median and range per file (a manifest from before the field prints that it was not recorded)."""
    from nepbench.cli import main

    out = tmp_path / "dft"
    selection, _ = build(spec, FakeEngine(), out)
    manifest = json.loads((out / "manifest.json").read_text())
    expected = {round(float(np.sqrt(np.mean(np.sin(a.positions) ** 2))), 4) for a in selection.items}
    recorded = {f["force_rms_ev_per_a"] for entry in manifest["files"].values() for f in entry["frames"]}
    assert recorded == expected
    assert main(["reference", "show", str(out)]) == 0
    printed = capsys.readouterr().out
    first = next(iter(manifest["files"]))
    rms = sorted(f["force_rms_ev_per_a"] for f in manifest["files"][first]["frames"])
    assert f"[{rms[0]:.2f}–{rms[-1]:.2f}]" in printed
    for entry in manifest["files"].values():
        for frame in entry["frames"]:
            del frame["force_rms_ev_per_a"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["reference", "show", str(out)]) == 0
    assert "– (not recorded)" in capsys.readouterr().out
    # the header says how the labels sample k-space, from the recorded CP2K settings
    for settings, words in ((LABEL_TUNED_SETTINGS, "Γ point only"),
                            (LABEL_KP_SETTINGS, "k-points ⌈20 Å / cell width⌉ per axis"),
                            (dataclasses.replace(LABEL_TUNED_SETTINGS, kpoints=(2, 2, 1)), "k-points 2×2×1")):
        manifest["cp2k"] = {"version": "CP2K version 2023.1", "settings": settings.to_dict()}
        (out / "manifest.json").write_text(json.dumps(manifest))
        assert main(["reference", "show", str(out)]) == 0
        assert f"CP2K version 2023.1, {words}, " in capsys.readouterr().out.splitlines()[0]


def test_show_says_how_many_selected_frames_are_left_and_their_cost():
    """Frames to go = selected − labelled − failed, costed at the median recorded label time."""
    from nepbench.commands.reference import labelling_left

    def manifest(walls, selected, failed=0):
        frames = [{"frame_sha256": str(i), "wall_s": w} for i, w in enumerate(walls)]
        return {"files": {"a.extxyz.xz": {"frames": frames}}, "n_frames": len(walls),
                "failed": [{"hash": str(i)} for i in range(failed)], "selection": {"selected": selected}}

    assert labelling_left(manifest([100.0, 300.0, 200.0], 10, failed=1)) == (
        "labelled 3 of 10, 1 failed: 6 to go, about 0.3 h of CP2K at the median label's 200 s")
    assert labelling_left(manifest([3600.0, 7200.0], 4)) == (
        "labelled 2 of 4: 2 to go, about 3.0 h of CP2K at the median label's 5400 s")
    assert labelling_left(manifest([None], 3)) == "labelled 1 of 3: 2 to go"  # no time recorded
    assert labelling_left(manifest([1.0, 1.0], 2)) is None  # all labelled
    assert labelling_left(manifest([1.0], 2, failed=1)) is None  # the rest failed: nothing to go
    assert labelling_left({"files": {}, "n_frames": 0}) is None  # no selection recorded (a v1-style set)
