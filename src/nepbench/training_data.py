"""The frames a NEP is trained, validated and tested on, composed from several labelled sources.

A *source* is a CP2K reference set (`kind = "reference"`: an assembled folder with its manifest,
train and test splits) or the AIMD runs of an aimd.toml (`kind = "aimd"`: committed frames that
carry CP2K forces). Each source gives its frames a structure `weight` (GPUMD's `weight=`, honoured by
neppo and `nep`) and a `source` tag. `compose` returns one `TrainingSet`:

- train: the train split of every source (AIMD: the runs not in `test_runs`, every `stride`-th
  labelled frame), minus the validation origins;
- validation: whole *origins* drawn from the train frames of the sources that are tested
  (`test = true`; `validation_fraction` of their origins, seeded):
  an origin is an MD run of the v2 reference set (info `origin`), an AIMD run, or for frames with
  neither (random packings) the frame itself, so no validation frame has a train sibling;
- test: the test split of the sources with `test = true` and the AIMD `test_runs`; never trained on,
  never used to choose a hyper-parameter.

Reasoning and the v2 recipe: docs/training.md.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from .errors import ConfigError, InputError
from .provenance import content_hash
from .structures import labels_of, with_labels

SOURCE_KINDS = ("reference", "aimd")


@dataclass(frozen=True)
class Source:
    """One labelled source of training frames.

    Attributes:
        name: tag written to each frame's info `source` (unique within a recipe).
        kind: "reference" (an assembled CP2K set: `path` is its folder) or "aimd" (`path` is an
            aimd.toml; frames of its committed runs that carry forces).
        path: folder or aimd.toml, relative to the recipe's repository root.
        weight: structure weight of its train frames (1 = as much as any other frame).
        test: whether its test split (reference) or `test_runs` (aimd) join the test set.
        runs: aimd only: the run ids to use (empty = every run of the spec).
        test_runs: aimd only: runs held out whole for testing.
        stride: aimd only: keep every `stride`-th labelled frame (consecutive frames are correlated).
    """

    name: str
    kind: str
    path: str
    weight: float = 1.0
    test: bool = True
    runs: tuple[str, ...] = ()
    test_runs: tuple[str, ...] = ()
    stride: int = 1

    def validate(self) -> "Source":
        """Raise ConfigError on an unknown kind, a weight ≤ 0, a stride < 1 or aimd-only keys on a
        reference source; return self."""
        problems = []
        if self.kind not in SOURCE_KINDS:
            problems.append(f"kind {self.kind!r} (known: {', '.join(SOURCE_KINDS)})")
        if not (self.weight > 0 and np.isfinite(self.weight)):
            problems.append(f"weight {self.weight} (need > 0)")
        if self.stride < 1:
            problems.append(f"stride {self.stride} (need ≥ 1)")
        if self.kind == "reference" and (self.runs or self.test_runs or self.stride != 1):
            problems.append("runs, test_runs and stride apply to aimd sources only")
        if set(self.test_runs) - set(self.runs) and self.runs:
            problems.append(f"test_runs {sorted(set(self.test_runs) - set(self.runs))} not among runs")
        if problems:
            raise ConfigError(f"training source {self.name!r}: {'; '.join(problems)}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Source":
        """A Source from a recipe's [[source]] table (lists become tuples); ConfigError on unknown
        keys or invalid values."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        name = data.get("name", "?")
        if unknown:
            raise ConfigError(f"training source {name!r}: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}).validate()
        except TypeError as exc:
            raise ConfigError(f"training source {name!r}: {exc}") from None


@dataclass
class TrainingSet:
    """Frames for training (`train`), hyper-parameter choice (`validation`) and testing (`test`).

    Attributes:
        train, validation, test: labelled frames; info carries `source`, `split` ("train",
            "validation", "test") and, on train frames only, `weight`.
        validation_origins: the origins carved out of the train frames, sorted.
        data_sha256: per source name, the hash naming its data (reference: the manifest's
            `data_sha256`; aimd: the aimd manifest's per-run frame hashes, combined).
    """

    train: list[Atoms]
    validation: list[Atoms]
    test: list[Atoms]
    validation_origins: list[str]
    data_sha256: dict[str, str] = field(default_factory=dict)

    def final_train(self) -> list[Atoms]:
        """Train and validation frames together, as the final models are fitted once the
        hyper-parameters are chosen: copies of the validation frames back in the train split with
        their source's weight."""
        back = []
        for atoms in self.validation:
            copy = with_labels(atoms, *labels_of(atoms))
            copy.info.update(split="train", weight=float(atoms.info["source_weight"]))
            back.append(copy)
        return self.train + back

    def counts(self) -> dict[str, dict[str, int]]:
        """Frames per source in each part: {"train": {source: n}, "validation": …, "test": …}."""
        return {part: dict(Counter(str(a.info.get("source")) for a in frames))
                for part, frames in (("train", self.train), ("validation", self.validation), ("test", self.test))}


def origin_of(atoms: Atoms) -> str:
    """The frame's origin: `source:origin` (an MD run of the v2 set), `source:run` (an AIMD run) or
    `source:frame_sha256`/`source:hash` for a frame that is its own origin."""
    source = str(atoms.info.get("source", ""))
    for key in ("origin", "aimd_run", "frame_sha256", "hash"):
        if key in atoms.info:
            return f"{source}:{atoms.info[key]}"
    raise InputError("<frame>", "frame has no origin, run or hash to group it by")


def carve_validation(frames: Sequence[Atoms], fraction: float, seed: int) -> tuple[list[Atoms], list[Atoms], list[str]]:
    """Split `frames` into (train, validation, validation origins) by whole origins (`origin_of`).

    round(fraction × number of origins) origins go to validation, drawn with `seed`; at least one
    when fraction > 0 and there are two or more origins, never all of them. Pure: frames are not
    copied or changed."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"validation_fraction {fraction} (need 0 ≤ fraction < 1)")
    origins = sorted({origin_of(a) for a in frames})
    n_val = int(round(fraction * len(origins)))
    if fraction > 0 and len(origins) >= 2:
        n_val = min(max(n_val, 1), len(origins) - 1)
    else:
        n_val = 0
    rng = np.random.default_rng(seed)
    chosen = {origins[i] for i in rng.permutation(len(origins))[:n_val]}
    train = [a for a in frames if origin_of(a) not in chosen]
    validation = [a for a in frames if origin_of(a) in chosen]
    return train, validation, sorted(chosen)


def _tag(frames: Sequence[Atoms], source: Source, split: str) -> list[Atoms]:
    """Copies of `frames` (labels kept) with info `source` and `split`, and `weight` on train frames."""
    out = []
    for atoms in frames:
        energy, forces, stress = labels_of(atoms)
        if energy is None or forces is None or not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise InputError(source.path, f"training source {source.name!r}: a frame has missing or "
                             "non-finite energy/forces")
        copy = with_labels(atoms, energy, forces, stress)
        copy.info.update(source=source.name, split=split, source_weight=float(source.weight))
        if split == "train":
            copy.info["weight"] = float(source.weight)
        out.append(copy)
    return out


def reference_frames(source: Source, root: Path) -> tuple[list[Atoms], list[Atoms], str]:
    """(train, test, data_sha256) of a reference source, checked against its manifest (test is
    empty when `source.test` is false)."""
    from .training import reference_snapshot

    snapshot = reference_snapshot(root / source.path)
    test = _tag(snapshot.test, source, "test") if source.test else []
    return _tag(snapshot.train, source, "train"), test, snapshot.data_sha256


def aimd_frames(source: Source, root: Path) -> tuple[list[Atoms], list[Atoms], str]:
    """(train, test, data_sha256) of an aimd source: every `stride`-th labelled frame of each run
    (`engines.cp2k.read_labelled_frames`), the `test_runs` whole in test. Runs not started yet are
    skipped; a run named in `runs` that aimd.toml lacks raises ConfigError."""
    from .aimd import load_aimd_spec, run_dir_of
    from .engines.cp2k import read_labelled_frames

    spec_path = root / source.path
    spec = load_aimd_spec(spec_path)
    known = [r.id for r in spec.runs]
    missing = sorted(set(source.runs) - set(known))
    if missing:
        raise ConfigError(f"training source {source.name!r}: runs {missing} not in {spec_path}")
    train: list[Atoms] = []
    test: list[Atoms] = []
    hashes = {}
    for run_id in source.runs or known:
        folder = run_dir_of(spec, spec.run(run_id))
        if not (folder / "state.json").is_file():
            continue
        frames = read_labelled_frames(folder)[::source.stride]
        for atoms in frames:
            atoms.info["aimd_run"] = run_id
            atoms.info["motif"] = "aimd"
        held_out = run_id in source.test_runs
        if held_out and not source.test:
            continue
        (test if held_out else train).extend(_tag(frames, source, "test" if held_out else "train"))
        hashes[run_id] = content_hash([a.positions.round(8).tolist() for a in frames])
    return train, test, content_hash(hashes)


def compose(sources: Sequence[Source], root: str | Path, validation_fraction: float, seed: int) -> TrainingSet:
    """The TrainingSet of `sources` (paths relative to `root`), validation carved by origin with
    `seed`. Raises InputError for a source with a frame lacking finite energy and forces, or with no
    frames at all."""
    root = Path(root)
    train: list[Atoms] = []
    test: list[Atoms] = []
    hashes: dict[str, str] = {}
    for source in sources:
        loader = reference_frames if source.kind == "reference" else aimd_frames
        src_train, src_test, hashes[source.name] = loader(source, root)
        if not src_train and not src_test:
            raise InputError(root / source.path, f"training source {source.name!r} has no labelled frames")
        train += src_train
        test += src_test
    tested = {s.name for s in sources if s.test}  # validation mirrors the test: only sources tested
    candidates = [a for a in train if a.info["source"] in tested]
    kept, validation, origins = carve_validation(candidates, validation_fraction, seed)
    kept += [a for a in train if a.info["source"] not in tested]
    for atoms in validation:  # copies made by _tag: mark them, and give them no training weight
        atoms.info["split"] = "validation"
        atoms.info.pop("weight", None)
    return TrainingSet(kept, validation, test, origins, hashes)
