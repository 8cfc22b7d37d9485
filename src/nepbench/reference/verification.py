"""Reading the built set back: its manifest, every file's and frame's sha256, the frames themselves.

`verify` checks `dft/` against its manifest.json; `load_frames` hands out frames only from a set
that passes; `data_sha256` names the whole set by its manifest's hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ase import Atoms

from ..errors import InputError
from ..provenance import sha256_file
from ..structures import read_structures
from .assembly import frame_sha256
from .spec import DEFAULT_ROOT

#: Per-frame fields the manifest lists that `verify` holds to the frame file's own info.
MANIFEST_FRAME_INFO = ("split", "builder", "hash")


@dataclass
class VerifyResult:
    ok: bool
    problems: list[str]
    n_frames: int
    n_files: int


def load_manifest(path: str | Path) -> dict[str, Any]:
    """A DFT reference manifest.json, checked for the shape its readers rely on: an object whose
    `files` maps each file name (a plain name: the file lies beside the manifest) to {"sha256",
    "frames": [{"frame_sha256", ...}, ...], ...}.

    Raises:
        InputError naming the file: unreadable, not UTF-8, malformed JSON, or another shape.
    """
    from ..textfiles import load_json

    path = Path(path)
    manifest = load_json(path, InputError)
    if not isinstance(manifest, dict):
        raise InputError(path, f"expected a JSON object, got {type(manifest).__name__}")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise InputError(path, f"'files' must be an object (file name → entry), got {type(files).__name__}")
    for name, entry in files.items():
        if Path(name).name != name or name in ("", ".", ".."):  # read and copied beside the manifest
            raise InputError(path, f"files entry {name!r} is not a plain file name (no folders, no '..')")
        frames = entry.get("frames") if isinstance(entry, dict) else None
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(frames, list)
                and all(isinstance(f, dict) and isinstance(f.get("frame_sha256"), str) for f in frames)):
            raise InputError(path, f"files entry {name!r} needs a 'sha256' string and a 'frames' list of "
                                   "objects with a 'frame_sha256'")
    return manifest


def verify(out_dir: str | Path = DEFAULT_ROOT / "dft") -> VerifyResult:
    """Check every file's and every frame's sha256 against the manifest."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(manifest_path, "manifest not found (run `nepbench reference build` first)")
    manifest = load_manifest(manifest_path)
    problems: list[str] = []
    n_frames = 0
    listed = manifest.get("files", {})
    if not listed:
        problems.append(f"{manifest_path}: lists no frame files")
    for extra in sorted(p.name for p in out_dir.glob("*.extxyz*") if p.name not in listed):
        problems.append(f"{out_dir / extra}: not in the manifest")
    for name, entry in listed.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: file sha256 differs from the manifest")
        try:
            frames = read_structures(path, require_labels=True)
        except (InputError, ValueError) as exc:  # ValueError: a structure check on a frame (e.g. a flat cell)
            problems.append(str(exc) if isinstance(exc, InputError) else f"{path}: unreadable frame ({exc})")
            continue
        expected = [f["frame_sha256"] for f in entry["frames"]]
        if len(frames) != len(expected):
            problems.append(f"{path}: {len(frames)} frames, manifest lists {len(expected)}")
        for index, (frame, want) in enumerate(zip(frames, expected)):
            got = frame_sha256(frame)
            if got != want:
                problems.append(f"{path}: frame {index} sha256 differs from the manifest")
            listed_frame = entry["frames"][index]
            differ = [key for key in MANIFEST_FRAME_INFO
                      if key in listed_frame and listed_frame[key] != frame.info.get(key)]
            if differ:  # what `show`, training and the splits read from the manifest must be the file's
                problems.append(f"{path}: frame {index}'s " + ", ".join(
                    f"{key} {listed_frame[key]!r} in the manifest, {frame.info.get(key)!r} in the file"
                    for key in differ))
        n_test = sum(frame.info.get("split") == "test" for frame in frames)
        listed_test = sum(f.get("split") == "test" for f in entry["frames"])
        if {entry.get("n_frames"), len(entry["frames"])} != {len(frames)} or {entry.get("n_test"), listed_test} != {n_test}:
            problems.append(f"{path}: manifest counts ({entry.get('n_frames')} frames, {entry.get('n_test')} test, "
                            f"{listed_test} listed as test) differ from the file's ({len(frames)}, {n_test})")
        n_frames += len(frames)
    if manifest.get("n_frames") != n_frames:
        problems.append(f"{manifest_path}: n_frames {manifest.get('n_frames')} but its files hold {n_frames}")
    failed = manifest.get("failed", [])
    if manifest.get("n_failed", len(failed)) != len(failed):
        problems.append(f"{manifest_path}: n_failed {manifest.get('n_failed')} but it lists {len(failed)} failed items")
    selected = (manifest.get("selection") or {}).get("selected")
    if isinstance(selected, int) and n_frames + len(failed) > selected:
        problems.append(f"{manifest_path}: {n_frames} frames and {len(failed)} failed items, more than the "
                        f"{selected} the selection records")
    return VerifyResult(not problems, problems, n_frames, len(listed))


def load_frames(out_dir: str | Path = DEFAULT_ROOT / "dft", split: str | None = None,
                motifs: Iterable[str] | None = None) -> list[Atoms]:
    """Labelled reference frames (optionally one split and some motifs), checked against the manifest."""
    out_dir = Path(out_dir)
    result = verify(out_dir)
    if not result.ok:
        raise InputError(out_dir / "manifest.json", "; ".join(result.problems[:3]))
    frames: list[Atoms] = []
    wanted = set(motifs) if motifs is not None else None
    for name in sorted(load_manifest(out_dir / "manifest.json")["files"]):
        for frame in read_structures(out_dir / name, require_labels=True):
            if (split is None or frame.info.get("split") == split) and (
                    wanted is None or frame.info.get("motif") in wanted):
                frames.append(frame)
    return frames


def data_sha256(out_dir: str | Path = DEFAULT_ROOT / "dft") -> str:
    """sha256 of the manifest: one hash that names the whole reference set."""
    return sha256_file(Path(out_dir) / "manifest.json")
