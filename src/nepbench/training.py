"""Training a Li–Si–C NEP on the project's CP2K reference set (CPU: neppo; GPU: GPUMD's `nep`).

The flow:

1. `reference_snapshot` copies the assembled reference set (per-motif extxyz + manifest) to a
   private folder and checks it against its manifest, so a build that is still writing cannot
   hand us a half-updated set; its `data_sha256` names exactly the data trained on.
2. `write_run_directory` writes a standard GPUMD `nep` run directory: `nep.in` (from a
   `TrainingConfig`, through calorine's `write_nepfile`), `train.xyz` from the **train** split
   only and `test.xyz` from the **test** split only (held out: neppo and `nep` only report on it).
   Energies are written relative to per-element reference energies μ_el (eV/atom) fitted by least
   squares on the train split (E_CP2K ≈ Σ_el n_el μ_el + E_NEP), because CP2K's GTH total energies
   are ~100–200 eV/atom per element and a NEP's single output bias cannot absorb that; forces and
   virials are unchanged. μ is recorded in the provenance.
3. `run_neppo` trains in that folder with neppo (PyTorch) in a subprocess, on the CPU with a
   fixed thread count, and parses `loss.out` (`read_loss_curve`).
4. `training_provenance` records everything that determines the model.

Units: energies eV (per atom where named), forces eV/Å, virials eV, cutoffs Å, times s.
The GPU route (GPUMD `nep` in the container) reads the same run directory: docs/training.md.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from ase import Atoms

from .errors import ConfigError, EngineCrashed, EngineNotAvailable, InputError
from .files import atomic_write_bytes, atomic_write_text
from .provenance import code_sha256, content_hash, git_code_modified, git_commit, hardware_info, package_versions, sha256_file
from .structures import extxyz_bytes, labels_of

Trainer = Literal["neppo", "gpumd"]
TRAINERS: tuple[str, ...] = ("neppo", "gpumd")
#: neppo's own default learning-rate schedule (cosine from the first to the second value).
NEPPO_DEFAULT_LEARNING_RATE = (1e-2, 1e-4)
#: Frame info keys copied into train.xyz/test.xyz (GPUMD ignores keys it does not know; none of
#: these begins like a key it reads: energy=, virial=, stress=, weight=, lattice=, charge=, pbc=).
FRAME_INFO_KEYS = ("config_type", "motif", "split", "frame_sha256", "builder", "candidate", "weight", "source",
                   "origin", "aimd_run")
SNAPSHOT_RETRIES = 5


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class TrainingConfig:
    """Every hyperparameter of one NEP training run (GPUMD `nep.in` keywords where one exists).

    Attributes:
        species: chemical species, in the order of `type` in nep.in and of the model header.
        cutoff_radial_a, cutoff_angular_a: descriptor cutoffs (Å); GPUMD wants angular ≥ 3 Å.
        n_max: (radial, angular) numbers of radial functions.
        basis_size: (radial, angular) Chebyshev basis sizes.
        l_max: (3-body l_max, 4-body flag, 5-body flag) as in nep.in.
        neurons: hidden-layer width.
        zbl_outer_a: outer cutoff (Å) of the universal ZBL repulsion (inner = half), or None.
        lambda_e, lambda_f, lambda_v: loss weights of energy, force and virial errors.
        lambda_1, lambda_2: L1/L2 regularisation weights; None = trainer default (GPUMD: automatic;
            neppo: none).
        batch: structures per batch.
        generations: neppo: gradient steps; GPUMD: SNES generations (not comparable counts).
        seed: seed of the initial parameters and of the batches (neppo; GPUMD draws its own).
        output_interval: steps between rows of loss.out (neppo).
        learning_rate: neppo's AdamW learning rate, cosine from the first to the second value.
        weight_decay: neppo's AdamW decoupled weight decay.
    """

    species: tuple[str, ...] = ("Li", "Si", "C")
    cutoff_radial_a: float = 5.0
    cutoff_angular_a: float = 4.0
    n_max: tuple[int, int] = (4, 4)
    basis_size: tuple[int, int] = (8, 8)
    l_max: tuple[int, int, int] = (4, 2, 0)
    neurons: int = 30
    zbl_outer_a: float | None = 2.0
    lambda_e: float = 1.0
    lambda_f: float = 1.0
    lambda_v: float = 0.1
    lambda_1: float | None = None
    lambda_2: float | None = None
    batch: int = 8
    generations: int = 1000
    seed: int = 42
    output_interval: int = 50
    learning_rate: tuple[float, float] = NEPPO_DEFAULT_LEARNING_RATE
    weight_decay: float = 0.0
    version: int = 4

    def validate(self) -> "TrainingConfig":
        """Raise ConfigError on values GPUMD or neppo would reject; return self."""
        problems = []
        if self.version != 4:
            problems.append(f"version {self.version} (only NEP4)")
        if not self.species or len(set(self.species)) != len(self.species):
            problems.append(f"species {self.species} (empty or repeated)")
        if not 3.0 <= self.cutoff_angular_a <= self.cutoff_radial_a:
            problems.append(f"cutoffs {self.cutoff_radial_a}/{self.cutoff_angular_a} Å "
                            "(need 3 ≤ angular ≤ radial)")
        if not (0 <= self.n_max[0] <= 12 and 0 <= self.n_max[1] <= 8):
            problems.append(f"n_max {self.n_max}")
        if not (0 <= self.basis_size[0] <= 16 and 0 <= self.basis_size[1] <= 12):
            problems.append(f"basis_size {self.basis_size}")
        if not 2 <= self.l_max[0] <= 8:
            problems.append(f"l_max {self.l_max}")
        if not 1 <= self.neurons <= 120:
            problems.append(f"neurons {self.neurons}")
        if self.zbl_outer_a is not None and not 1.0 <= self.zbl_outer_a <= 4.0:
            problems.append(f"zbl_outer_a {self.zbl_outer_a} Å (GPUMD: 1–4 Å)")
        weights = [self.lambda_e, self.lambda_f, self.lambda_v, self.weight_decay]
        weights += [w for w in (self.lambda_1, self.lambda_2) if w is not None]
        if any(not (w >= 0 and math.isfinite(w)) for w in weights):
            problems.append("negative or non-finite loss weight")
        if not 0 <= self.seed < 2**32:  # neppo (like GPUMD) draws a random seed for a negative one
            problems.append(f"seed {self.seed} (need 0 ≤ seed < 2**32: a negative seed trains from a "
                            "random one that the provenance cannot record)")
        if self.batch < 1 or self.generations < 1 or self.output_interval < 1:
            problems.append("batch, generations and output_interval must be ≥ 1")
        if len(self.learning_rate) != 2 or not all(r > 0 and math.isfinite(r) for r in self.learning_rate):
            problems.append(f"learning_rate {self.learning_rate}")
        if problems:
            raise ConfigError(f"training config: {'; '.join(problems)}")
        return self

    def nep_in_parameters(self, trainer: Trainer = "neppo") -> dict[str, Any]:
        """nep.in keywords in file order (type before cutoff, which `nep` requires).

        `seed`, `output_interval`, `learning_rate` and `weight_decay` are neppo keywords that
        GPUMD's `nep` rejects; they are written only for `trainer="neppo"`, and the learning rate
        and weight decay only where they differ from neppo's defaults.
        """
        if trainer not in TRAINERS:
            raise ConfigError(f"trainer {trainer!r} unknown (known: {', '.join(TRAINERS)})")
        p: dict[str, Any] = {"version": self.version,
                             "type": [len(self.species), *self.species]}
        if self.zbl_outer_a is not None:
            p["zbl"] = _num(self.zbl_outer_a)
        p.update({
            "cutoff": [_num(self.cutoff_radial_a), _num(self.cutoff_angular_a)],
            "n_max": list(self.n_max), "basis_size": list(self.basis_size), "l_max": list(self.l_max),
            "neuron": self.neurons,
            "lambda_e": _num(self.lambda_e), "lambda_f": _num(self.lambda_f), "lambda_v": _num(self.lambda_v),
        })
        if self.lambda_1 is not None:
            p["lambda_1"] = _num(self.lambda_1)
        if self.lambda_2 is not None:
            p["lambda_2"] = _num(self.lambda_2)
        p["batch"] = self.batch
        p["generation"] = self.generations
        if trainer == "neppo":
            p["seed"] = self.seed
            p["output_interval"] = self.output_interval
            if tuple(self.learning_rate) != NEPPO_DEFAULT_LEARNING_RATE:
                p["learning_rate"] = [_num(x) for x in self.learning_rate]
            if self.weight_decay:
                p["weight_decay"] = _num(self.weight_decay)
        return p

    def nep_in_text(self, trainer: Trainer = "neppo") -> str:
        """The nep.in text, as calorine's `write_nepfile` writes it."""
        from calorine.nep.io import write_nepfile

        with tempfile.TemporaryDirectory(prefix="nepbench-nepin-") as tmp:
            path = Path(tmp) / "nep.in"
            write_nepfile(str(path), self.nep_in_parameters(trainer))
            return path.read_text()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        """Inverse of `to_dict` (lists become tuples); unknown keys raise ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"training config: unknown key(s) {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**values).validate()
        except (TypeError, ValueError) as exc:  # a value of the wrong kind, e.g. n_max = 5 for a pair
            raise ConfigError(f"training config: {exc}") from None


def _num(value: float) -> str:
    """A float as nep.in wants it: shortest exact text (5.0 → "5", 0.1 → "0.1")."""
    return f"{float(value):g}" if float(value) == float(f"{float(value):g}") else repr(float(value))


# --------------------------------------------------------------------------- reference data

@dataclass
class ReferenceSnapshot:
    """The labelled frames of a reference set as checked against its manifest at one moment.

    Attributes:
        train, test: frames of the train and test split (energy eV, forces eV/Å, stress eV/Å³).
        data_sha256: sha256 of the manifest (`reference.data_sha256`): names the whole set.
        manifest: the manifest itself (selection, CP2K settings, per-frame hashes).
        source: the folder the snapshot came from.
    """

    train: list[Atoms]
    test: list[Atoms]
    data_sha256: str
    manifest: dict[str, Any]
    source: Path


def reference_snapshot(dft_dir: str | os.PathLike[str], retries: int = SNAPSHOT_RETRIES,
                       wait_s: float = 2.0) -> ReferenceSnapshot:
    """Copy `dft_dir`'s manifest and frame files aside, verify them and load both splits.

    A background `nepbench reference build` rewrites the files and then the manifest (each
    atomically, not together); a copy taken between the two fails verification and is retried
    after `wait_s` seconds, up to `retries` times. Raises InputError if it never verifies.
    """
    from .reference import data_sha256, load_frames, load_manifest

    dft_dir = Path(dft_dir)
    manifest_path = dft_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(manifest_path, "manifest not found (run `nepbench reference build` first)")
    last: str | None = None
    for attempt in range(max(1, retries)):
        with tempfile.TemporaryDirectory(prefix="nepbench-ref-") as tmp:
            copy = Path(tmp)
            try:
                (copy / "manifest.json").write_bytes(manifest_path.read_bytes())
                manifest = load_manifest(copy / "manifest.json")
                for name in manifest.get("files", {}):
                    shutil.copyfile(dft_dir / name, copy / name)
                train = load_frames(copy, split="train")
                test = load_frames(copy, split="test")
                return ReferenceSnapshot(train, test, data_sha256(copy), manifest, dft_dir)
            except (InputError, OSError, ValueError) as exc:
                last = str(exc).replace(str(copy), str(dft_dir))  # name the real files, not the copy
        time.sleep(wait_s * (attempt + 1))
    raise InputError(manifest_path, f"reference set did not verify after {retries} tries ({last})")


# --------------------------------------------------------------------------- run directory

def fit_energy_references(frames: Sequence[Atoms], species: Sequence[str]) -> dict[str, float]:
    """Per-element reference energies μ_el (eV/atom): least squares of E ≈ Σ_el n_el μ_el.

    Species absent from `frames` get μ = 0. Raises InputError for frames without energies.
    """
    species = list(species)
    counts = np.array([[Counter(a.get_chemical_symbols()).get(s, 0) for s in species] for a in frames],
                      dtype=float)
    energies = []
    for index, atoms in enumerate(frames):
        energy = labels_of(atoms)[0]
        if energy is None:
            raise InputError("<train frames>", f"frame {index} has no energy")
        energies.append(energy)
    present = counts.sum(axis=0) > 0
    mu = np.zeros(len(species))
    if len(frames):
        mu[present] = np.linalg.lstsq(counts[:, present], np.array(energies), rcond=None)[0]
    return {s: float(m) for s, m in zip(species, mu)}


def gpumd_frame(atoms: Atoms, energy_reference_ev_per_atom: dict[str, float] | None = None) -> Atoms:
    """A copy of a labelled frame in the GPUMD `nep` extxyz convention.

    `energy=` total energy (eV) minus Σ n_el μ_el, `virial=` the 9 components of −σ·V (eV, row
    major xx xy xz yx …; σ the ASE-sign stress) where the frame has a stress, per-atom `forces`
    (eV/Å); plus the info keys in `FRAME_INFO_KEYS` (`config_type` = motif).
    """
    energy, forces, stress = labels_of(atoms)
    if energy is None or forces is None:
        raise InputError("<frame>", "frame has no energy/forces labels")
    out = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell.array,
                pbc=atoms.pbc)
    shift = sum((energy_reference_ev_per_atom or {}).get(s, 0.0) for s in atoms.get_chemical_symbols())
    info: dict[str, Any] = {"energy": float(energy - shift)}
    if stress is not None:
        from ase.stress import voigt_6_to_full_3x3_stress

        info["virial"] = (-voigt_6_to_full_3x3_stress(stress) * atoms.get_volume()).ravel()
    if "motif" in atoms.info:
        info["config_type"] = str(atoms.info["motif"])
    for key in FRAME_INFO_KEYS:
        if key in atoms.info and key != "config_type":
            info[key] = atoms.info[key]
    out.info.update(info)
    out.arrays["forces"] = np.asarray(forces, dtype=float).copy()
    return out


@dataclass
class RunDirectory:
    """A written GPUMD/neppo run directory.

    Attributes:
        path: the folder (nep.in, train.xyz, test.xyz).
        trainer: whose nep.in dialect was written ("neppo" or "gpumd").
        n_train, n_test: frames in train.xyz and test.xyz.
        n_train_atoms, n_test_atoms: atoms in them.
        train_frame_sha256, test_frame_sha256: `frame_sha256` of each frame, in file order.
        energy_reference_ev_per_atom: μ_el subtracted from every energy (fitted on train).
        files_sha256: sha256 of nep.in, train.xyz and test.xyz.
    """

    path: Path
    trainer: str
    n_train: int
    n_test: int
    n_train_atoms: int
    n_test_atoms: int
    train_frame_sha256: list[str]
    test_frame_sha256: list[str]
    energy_reference_ev_per_atom: dict[str, float]
    files_sha256: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}


def _check_split(frames: Sequence[Atoms], split: str, species: Sequence[str]) -> None:
    for index, atoms in enumerate(frames):
        got = atoms.info.get("split")
        if got is not None and got != split:
            raise InputError(f"<{split} frames>", f"frame {index} belongs to the {got!r} split, not {split!r}")
        extra = sorted(set(atoms.get_chemical_symbols()) - set(species))
        if extra:
            raise InputError(f"<{split} frames>", f"frame {index} has species {', '.join(extra)} "
                             f"not in the training species {', '.join(species)}")


def write_run_directory(path: str | os.PathLike[str], config: TrainingConfig, train: Sequence[Atoms],
                        test: Sequence[Atoms], trainer: Trainer = "neppo") -> RunDirectory:
    """Write nep.in, train.xyz (train split only) and test.xyz (test split only) into `path`.

    Frames whose info carries a `split` must carry the matching one (InputError otherwise), so a
    test frame can never reach train.xyz; a species of the test split must occur in the train split
    (its energy reference μ is fitted there). Existing neppo/nep outputs in `path` are left alone;
    the three inputs are written atomically.
    """
    config.validate()
    if not train:
        raise InputError(path, "no training frames")
    _check_split(train, "train", config.species)
    _check_split(test, "test", config.species)
    in_train = {s for a in train for s in a.get_chemical_symbols()}
    unseen = sorted({s for a in test for s in a.get_chemical_symbols()} - in_train)
    if unseen:  # its μ would be 0 and its test energies off by its whole cohesive energy
        raise InputError(path, f"species {', '.join(unseen)} of the test split has no frame in the train "
                               "split: no energy reference can be fitted for it")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    mu = fit_energy_references(train, config.species)
    atomic_write_text(path / "nep.in", config.nep_in_text(trainer))
    atomic_write_bytes(path / "train.xyz", extxyz_bytes([gpumd_frame(a, mu) for a in train]))
    if test:
        atomic_write_bytes(path / "test.xyz", extxyz_bytes([gpumd_frame(a, mu) for a in test]))
    elif (path / "test.xyz").exists():
        (path / "test.xyz").unlink()
    files = {name: sha256_file(path / name) for name in ("nep.in", "train.xyz", "test.xyz")
             if (path / name).is_file()}
    return RunDirectory(
        path=path, trainer=trainer, n_train=len(train), n_test=len(test),
        n_train_atoms=sum(len(a) for a in train), n_test_atoms=sum(len(a) for a in test),
        train_frame_sha256=[_frame_id(a) for a in train], test_frame_sha256=[_frame_id(a) for a in test],
        energy_reference_ev_per_atom=mu, files_sha256=files)


def _frame_id(atoms: Atoms) -> str:
    """The frame's recorded `frame_sha256`, or the reference module's hash of its content."""
    if "frame_sha256" in atoms.info:
        return str(atoms.info["frame_sha256"])
    from .reference import frame_sha256

    return frame_sha256(atoms)


# --------------------------------------------------------------------------- training

@dataclass
class TrainingResult:
    """Outcome of one training run.

    Attributes:
        run_dir: the run directory.
        nep_txt: the final model (`nep.txt`; the last step, not the test-selected nep_best.txt).
        trainer: "neppo".
        trainer_version: its version.
        steps: gradient steps taken (last row of loss.out).
        wall_s: wall time of the trainer subprocess (s), reading the data included.
        threads: CPU threads it was allowed (OMP_NUM_THREADS).
        device: torch device.
        loss_curve: one dict per loss.out row (`step`, `total_loss`, `rmse_energy_train_ev_per_atom`, …).
        final: the last row.
    """

    run_dir: Path
    nep_txt: Path
    trainer: str
    trainer_version: str
    steps: int
    wall_s: float
    threads: int
    device: str
    loss_curve: list[dict[str, float]]
    final: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["run_dir"], out["nep_txt"] = str(self.run_dir), str(self.nep_txt)
        return out


#: calorine's loss.out column names → ours (with units).
LOSS_COLUMNS = {
    "total_loss": "total_loss", "L1": "l1_loss", "L2": "l2_loss",
    "RMSE_E_train": "rmse_energy_train_ev_per_atom", "RMSE_F_train": "rmse_force_train_ev_per_a",
    "RMSE_V_train": "rmse_virial_train_ev_per_atom",
    "RMSE_E_test": "rmse_energy_test_ev_per_atom", "RMSE_F_test": "rmse_force_test_ev_per_a",
    "RMSE_V_test": "rmse_virial_test_ev_per_atom",
}


def read_loss_curve(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Rows of a GPUMD/neppo `loss.out` (read with calorine's `read_loss`).

    Each row: `step` (generation), `total_loss`, and where present `l1_loss`, `l2_loss`,
    `rmse_{energy,force,virial}_{train,test}_*` in eV/atom (energy, virial) and eV/Å (force).
    Without test.xyz neppo writes no test columns (and no `rmse_*_test_*` keys appear); it writes
    0 for a NaN error, which `diverged_problem` catches through the total loss.
    Raises InputError for a missing, empty or malformed file.
    """
    from calorine.nep.io import read_loss

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "loss file not found (did the training start?)")
    try:
        frame = read_loss(str(path))
    except (ValueError, IndexError, KeyError, OSError) as exc:
        raise InputError(path, f"malformed loss.out ({' '.join(str(exc).split())[:160]})") from None
    if frame.empty:
        raise InputError(path, "loss.out has no rows")
    rows = []
    for step, values in frame.iterrows():
        row = {"step": float(step)}
        for column, value in values.items():
            row[LOSS_COLUMNS.get(str(column), str(column))] = float(value)
        rows.append(row)
    return rows


def trainer_version(name: str = "neppo") -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def neppo_available() -> tuple[bool, str]:
    """(True, "") if neppo and torch import here, else (False, the reason)."""
    for module in ("torch", "neppo"):
        if trainer_version(module) is None:
            return False, f"{module} is not installed (pip install -r requirements-train.txt)"
    return True, ""


def diverged_problem(curve: list[dict[str, float]], nep_txt: Path) -> str | None:
    """Why a finished training is not a model, or None: a non-finite last loss (neppo writes 0 for
    a NaN RMSE and exits 0, so the RMSEs alone would read as a perfect fit) or a nep.txt that is
    not a complete, finite potential."""
    from .models import ModelError, validate_model_file

    last = curve[-1].get("total_loss", float("nan"))
    if not math.isfinite(last):
        return f"total loss {last} at step {curve[-1]['step']:.0f} (loss.out)"
    try:
        validate_model_file(nep_txt)
    except ModelError as exc:
        return f"nep.txt is not a usable potential ({str(exc)[:200]})"
    return None


def run_neppo(run_dir: str | os.PathLike[str], threads: int = 1, device: str = "cpu",
              log_path: str | os.PathLike[str] | None = None, timeout_s: float | None = None) -> TrainingResult:
    """Train with `neppo train RUN_DIR --device DEVICE` in a subprocess and parse its loss curve.

    The subprocess gets OMP_NUM_THREADS/MKL_NUM_THREADS = `threads` (torch's intra-op threads);
    its output goes to `log_path` (default RUN_DIR/train.log). A previous loss.out is removed
    first (neppo appends). Raises EngineNotAvailable without neppo/torch, EngineCrashed if the
    trainer fails or exceeds `timeout_s`.
    """
    ok, why = neppo_available()
    if not ok:
        raise EngineNotAvailable(f"neppo training: {why}")
    run_dir = Path(run_dir)
    for name in ("nep.in", "train.xyz"):
        if not (run_dir / name).is_file():
            raise InputError(run_dir / name, "missing from the run directory")
    if (run_dir / "zbl.in").exists():  # neppo would read it, and no provenance names it
        raise InputError(run_dir / "zbl.in", "a flexible-ZBL file the run directory was not written with; "
                                             "remove it (nepbench records nep.in's zbl cutoffs only)")
    for stale in ("loss.out", "nep.txt", "nep_best.txt"):
        (run_dir / stale).unlink(missing_ok=True)
    log_path = Path(log_path) if log_path else run_dir / "train.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    code = ("import sys, torch; torch.set_num_threads(int(sys.argv[1])); "
            "from neppo.cli import main; main(sys.argv[2:])")
    command = [sys.executable, "-c", code, str(threads), "train", str(run_dir), "--device", device]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise EngineCrashed(f"{run_dir}: neppo exceeded {timeout_s} s (log: {log_path})") from None
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        raise EngineCrashed(f"{run_dir}: neppo exited with {proc.returncode}: "
                            f"{tail[-1][:200] if tail else 'no output'} (log: {log_path})")
    nep_txt = run_dir / "nep.txt"
    if not nep_txt.is_file():
        raise EngineCrashed(f"{run_dir}: neppo finished without writing nep.txt (log: {log_path})")
    curve = read_loss_curve(run_dir / "loss.out")
    diverged = diverged_problem(curve, nep_txt)
    if diverged:
        raise EngineCrashed(f"{run_dir}: neppo diverged: {diverged} (log: {log_path})")
    return TrainingResult(run_dir=run_dir, nep_txt=nep_txt, trainer="neppo",
                          trainer_version=trainer_version("neppo") or "unknown",
                          steps=int(curve[-1]["step"]), wall_s=wall, threads=threads, device=device,
                          loss_curve=curve, final=dict(curve[-1]))


# --------------------------------------------------------------------------- provenance

def training_provenance(config: TrainingConfig, run: RunDirectory, result: TrainingResult | None,
                        reference_data_sha256: str | None = None,
                        selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that determines the trained model, for provenance.json.

    Contains the config (every hyperparameter), the nep.in text, the training data (the train
    frames' sha256 in file order, their combined hash, the reference set's `data_sha256`, the
    held-out test frames' hashes), the per-element energy references, the trainer and torch
    versions, seed, final losses and RMSEs, wall time, steps and hardware.
    """
    nep_in = (run.path / "nep.in").read_text()
    record: dict[str, Any] = {
        "schema": "nepbench.training/1",
        "config": config.to_dict(),
        "nep_in": nep_in,
        "run_trainer": run.trainer,  # which dialect nep.in was written in
        "seed": config.seed if run.trainer == "neppo" else None,  # GPUMD's nep draws its own
        "training_data": {
            "reference_data_sha256": reference_data_sha256,
            "train_frames_sha256": content_hash(run.train_frame_sha256),
            "train_frame_sha256": run.train_frame_sha256,
            "n_train_frames": run.n_train, "n_train_atoms": run.n_train_atoms,
            "test_frame_sha256": run.test_frame_sha256,
            "n_test_frames": run.n_test, "n_test_atoms": run.n_test_atoms,
            "test_use": "held out: the trainer only reports errors on it; the registered model is "
                        "the last step's nep.txt, not the test-selected nep_best.txt",
            "files_sha256": run.files_sha256,
            "energy_reference_ev_per_atom": run.energy_reference_ev_per_atom,
            "energy_convention": "E_CP2K ≈ E_NEP + Σ_el n_el μ_el (μ fitted by least squares on the "
                                 "train split); forces and virials unchanged",
        },
        "selection": selection,
        "packages": {**package_versions(), "torch": trainer_version("torch"), "neppo": trainer_version("neppo")},
        "hardware": hardware_info(),
        "hardware_role": "trained here" if result is not None else "prepared the run folder only",
        "nepbench_commit": git_commit(),
        # the commit alone does not identify the code when the tree had uncommitted changes
        "nepbench_code_modified": git_code_modified(),
        "nepbench_code_sha256": code_sha256(),
    }
    if result is not None:
        record.update({
            "trainer": {"name": result.trainer, "version": result.trainer_version,
                        "torch": trainer_version("torch"), "device": result.device,
                        "threads": result.threads},
            "steps": result.steps,
            "wall_s": round(result.wall_s, 2),
            "final": result.final,
            "model_sha256": sha256_file(result.nep_txt),
        })
    return record
