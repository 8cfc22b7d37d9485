"""Cached MD candidate pools of a reference spec, and the NEP descriptors DIRECT clusters them by.

A family with an `md` table (`md_sampling.MDSampling`) gets its candidates from NEP MD with the
spec's `sampler_model`. The pool is expensive (minutes of NEP MD per family), so it is written once
to `<out_dir>/pool/<NN>-<family>.extxyz.xz` with a JSON sidecar holding the key it was made from
(family, protocol, seeds, sampler sha256, nepbench's sampling code version) and the runs that
failed; a later build reads it back while the key matches. Frames are always read back from the
file, so a label's input hash is the same whether the pool was just made or cached. The pool
files are committed with the set: DIRECT picks by candidate index, and NEP MD is not bitwise
reproducible across machines, so the pool is what makes the selection reproducible.
"""

from __future__ import annotations

import io
import lzma
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from ase import Atoms
from ase.io import read as ase_read
from ase.io import write as ase_write

from .errors import InputError
from .files import atomic_write_bytes, atomic_write_json
from .provenance import content_hash

if TYPE_CHECKING:
    from .reference import Family, ReferenceSpec

POOL_DIR = "pool"
#: Bump when md_sampling changes what a pool holds, so cached pools are made again.
SAMPLING_VERSION = 1


def pool_paths(spec: "ReferenceSpec", family: "Family", number: int) -> tuple[Path, Path]:
    """(frames file, sidecar JSON) of family `number`'s pool."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", family.builder).strip("-")
    base = spec.out_path / POOL_DIR / f"{number:02d}-{family.motif}-{slug}"
    return base.with_suffix(".extxyz.xz"), base.with_suffix(".json")


def pool_key(spec: "ReferenceSpec", family: "Family", number: int, sampler_sha256: str) -> str:
    """sha256 of everything a family's pool is made from."""
    from .reference import candidate_seed

    return content_hash({
        "builder": family.builder, "motif": family.motif, "params": family.params,
        "md": family.md.to_dict(), "seeds": [candidate_seed(spec, number, r) for r in range(family.md.runs)],
        "sampler_sha256": sampler_sha256, "sampling_version": SAMPLING_VERSION,
    })


def _read_pool(path: Path) -> list[Atoms]:
    try:
        text = lzma.decompress(path.read_bytes()).decode()
        return ase_read(io.StringIO(text), index=":", format="extxyz") if text.strip() else []
    except (OSError, lzma.LZMAError, ValueError) as exc:
        raise InputError(path, f"unreadable MD pool ({exc})") from None


def md_family_pool(spec: "ReferenceSpec", family: "Family", number: int, log=print) -> list[Atoms]:
    """The family's MD candidate pool, from its cache file when the key matches, else made with
    NEP MD (`md_sampling.family_pool`) and cached. Each frame carries motif, builder and its
    `candidate` index in the pool."""
    from . import systems
    from .engines.nep_cpu import NepCpuEngine
    from .md_sampling import family_pool
    from .models import resolve_model
    from .reference.selection import params_for, candidate_seed

    model = resolve_model(spec.sampler_model)
    frames_path, meta_path = pool_paths(spec, family, number)
    key = pool_key(spec, family, number, model.sha256)
    if frames_path.is_file() and meta_path.is_file():
        from .textfiles import load_json

        meta = load_json(meta_path, InputError)
        if isinstance(meta, dict) and meta.get("key") == key:
            return _tagged(_read_pool(frames_path), family)
    log(f"reference: MD pool for {family.key}: {family.md.runs} NEP MD runs with {spec.sampler_model} ...")
    engine = NepCpuEngine(model.path, threads=1)
    builds = []
    for run in range(family.md.runs):
        seed = candidate_seed(spec, number, run)
        builds.append((seed, systems.build(family.builder, seed=seed, **params_for(family, run))))
    pool, failures = family_pool(builds, family.md, engine, f"{number:02d} {family.key}")
    for failure in failures:
        log(f"reference: MD pool for {family.key}: run left out: {failure.origin}: {failure.reason}")
    buffer = io.StringIO()
    for frame in pool:
        frame.calc = None
    ase_write(buffer, pool, format="extxyz")
    frames_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(frames_path, lzma.compress(buffer.getvalue().encode(), preset=9))
    densities = {}
    for frame in pool:
        densities.setdefault(int(frame.info["run"]), frame.info.get("density_g_cm3"))
    atomic_write_json(meta_path, {
        "key": key, "family": family.key, "sampler_model": spec.sampler_model, "sampler_sha256": model.sha256,
        "protocol": family.md.to_dict(), "n_frames": len(pool),
        "failures": [{"origin": f.origin, "reason": f.reason} for f in failures],
        "density_g_cm3_by_run": {str(k): v for k, v in sorted(densities.items())},
    })
    return _tagged(_read_pool(frames_path), family)


def _tagged(frames: list[Atoms], family: "Family") -> list[Atoms]:
    for index, atoms in enumerate(frames):
        atoms.calc = None
        atoms.info.update({"motif": family.motif, "builder": family.builder, "candidate": index})
    return frames


def pool_record(spec: "ReferenceSpec", family: "Family", number: int) -> dict[str, Any]:
    """What the manifest records of a family's MD pool: sampler model and sha256, protocol,
    runs left out, NEP density per run."""
    from .textfiles import load_json

    _, meta_path = pool_paths(spec, family, number)
    meta = load_json(meta_path, InputError) if meta_path.is_file() else {}
    return {"sampler_model": meta.get("sampler_model"), "sampler_sha256": meta.get("sampler_sha256"),
            "md_protocol": meta.get("protocol"), "runs_left_out": meta.get("failures", []),
            "density_g_cm3_by_run": meta.get("density_g_cm3_by_run", {}),
            "pool_file": f"{POOL_DIR}/{pool_paths(spec, family, number)[0].name}"}


def mean_descriptors(frames: Sequence[Atoms], model: str) -> np.ndarray:
    """(n_frames, n_descriptors): each frame's NEP descriptors (calorine, `model`'s own) averaged
    over its atoms."""
    from calorine.nep import get_descriptors

    from .models import resolve_model

    path = str(resolve_model(model).path)
    return np.array([np.asarray(get_descriptors(atoms, model_filename=path)).mean(axis=0) for atoms in frames])
