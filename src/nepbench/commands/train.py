"""`nepbench train --out DIR [--steps N] [--seed S] [--register NAME]`: train a Li–Si–C NEP.

Trains on the reference set's train split with neppo on the CPU (the test split is held out and
only reported on), then writes into DIR:

    nep.in  nep.txt  loss.out  loss.csv  loss.png  train.log  provenance.json
    pool_pca.png  pool.json        (with --plot-pool: the DIRECT pool and picks in 2-D PCA)
    run/                           the GPUMD/neppo run directory (kept only with --keep-run or
                                   --prepare-only; train.xyz and test.xyz are rebuilt from hashes)

`--register NAME` copies nep.txt to models/NAME/nep.txt and writes the registry table
`[models.NAME]` (kind "local", sha256 checked at every use); a recipe's ensemble members
(DIR/members/member-K/nep.txt) go to models/NAME/members/member-K/nep.txt and into the table's
`ensemble` list, which the parity task uses for its uncertainty estimate. `--prepare-only --trainer gpumd`
writes a run directory for GPUMD's `nep` on a GPU instead (docs/training.md).
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
from pathlib import Path
from typing import Any

EPILOG = """examples:
  nepbench train --out runs/lisic --steps 2000
  nepbench train --out models/nepbench-lisic-v1/training --steps 10000 --plot-pool --register nepbench-lisic-v1
  nepbench train --out runs/gpu --trainer gpumd --prepare-only --steps 100000   # then GPUMD nep (docs/training.md)
  nepbench train --recipe models/nepbench-lisic-v2/recipe.toml --out models/nepbench-lisic-v2/training --register nepbench-lisic-v2
"""

#: Small outputs copied from the run directory to --out.
KEPT_RUN_FILES = ("nep.in", "nep.txt", "loss.out")


def register(sub: argparse._SubParsersAction) -> None:
    from ..reference import DEFAULT_ROOT
    from ..training import TrainingConfig

    defaults = TrainingConfig()
    parser = sub.add_parser(
        "train", help="train a Li-Si-C NEP on the reference set (CPU, neppo) and optionally register it",
        description="Train a NEP4 model on the CP2K reference set's train split with neppo on the CPU "
                    "(test split held out), record the loss curve and provenance, optionally register it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", type=int, default=defaults.generations,
                        help=f"training steps (neppo) or SNES generations (gpumd) (default {defaults.generations})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"seed (default {defaults.seed})")
    parser.add_argument("--batch", type=int, default=defaults.batch, help=f"structures per batch (default {defaults.batch})")
    parser.add_argument("--output-interval", type=int, default=None,
                        help="steps between loss rows (default: steps/100, at least 10)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    parser.add_argument("--reference", default=str(DEFAULT_ROOT / "dft"),
                        help="assembled reference set folder (default reference_data/dft)")
    parser.add_argument("--spec", default=str(DEFAULT_ROOT / "spec.toml"),
                        help="reference spec, for --plot-pool (default reference_data/spec.toml)")
    parser.add_argument("--trainer", choices=("neppo", "gpumd"), default="neppo",
                        help="nep.in dialect; gpumd implies --prepare-only (train on a GPU)")
    parser.add_argument("--prepare-only", action="store_true", help="write the run directory and stop")
    parser.add_argument("--plot-pool", action="store_true",
                        help="also plot the DIRECT pool and picks in 2-D PCA (regenerates the pool, ~1 min)")
    parser.add_argument("--keep-run", action="store_true", help="keep run/ (train.xyz, predictions) after training")
    parser.add_argument("--register", metavar="NAME", default=None,
                        help="copy nep.txt to models/NAME/ and add [models.NAME] to the registry")
    parser.add_argument("--timeout", type=float, default=None, help="stop the trainer after this many seconds")
    parser.add_argument("--recipe", default=None, metavar="TOML",
                        help="train from a recipe (sources, search grid, ensemble; docs/training.md) "
                             "instead of one reference set; --steps/--seed/--batch/--reference then "
                             "come from the recipe")
    parser.add_argument("--force", action="store_true",
                        help="write into an --out folder that already holds a training result, and let "
                             "--register replace a registered model of that name")
    parser.set_defaults(func=_train)


#: Files whose presence in --out means it holds a training result (a committed model's folder).
RESULT_FILES = ("provenance.json", "nep.txt", "train.log")


def existing_result(out: Path) -> list[str]:
    """The training-result files already in `out` (empty when it is new or holds none)."""
    return [name for name in RESULT_FILES if (out / name).exists()]


def register_problem(name: str, out: Path, force: bool) -> str | None:
    """Why `--register NAME` with `--out` cannot go ahead, or None.

    The registry records the provenance path relative to the repository, so --out must lie inside
    it (a provenance in /tmp would be gone after the commit); a registered NAME is replaced only with
    --force. Raises ModelError for a name the registry cannot hold (`check_model_name`).
    """
    from ..models import check_model_name, load_registry, registry_path, registry_root

    registry = registry_path()
    check_model_name(name, "--register")
    root = registry_root(registry)
    if not out.resolve().is_relative_to(root):
        return (f"--out {out} lies outside {root}, whose registry ({registry}) would point at a "
                "provenance.json that is not committed with the model; train into a folder under it")
    if not force and registry.is_file() and name in load_registry(registry):
        return f"a model of that name is registered in {registry}; give a new name, or --force to replace it"
    return None


def _train(args: argparse.Namespace) -> int:
    from .. import training
    from ..files import atomic_write_files, atomic_write_json, json_document

    out = Path(args.out)
    found = existing_result(out)
    if found and not args.force:  # a committed model's provenance would no longer describe its nep.txt
        print(f"nepbench: error: {out} already holds a training result ({', '.join(found)}); nothing written. "
              "Give a new --out, or --force to overwrite it", file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        print(f"nepbench: error: {out}: --out is a file, not a folder; nothing written", file=sys.stderr)
        return 2
    interval = args.output_interval or max(10, args.steps // 100)
    config = training.TrainingConfig(generations=args.steps, seed=args.seed, batch=args.batch,
                                     output_interval=min(interval, args.steps)).validate()
    trainer = args.trainer
    prepare_only = args.prepare_only or trainer == "gpumd"
    if args.register and prepare_only:
        print("nepbench: error: --register needs a trained model (not --prepare-only/--trainer gpumd)",
              file=sys.stderr)
        return 2
    if args.register:  # before hours of training, not after
        problem = register_problem(args.register, out, args.force)
        if problem:
            print(f"nepbench: error: --register {args.register}: {problem}; nothing written", file=sys.stderr)
            return 2
    if args.recipe:
        from ._train_recipe import train_recipe

        return train_recipe(args, out)
    snapshot = training.reference_snapshot(args.reference)
    run = training.write_run_directory(out / "run", config, snapshot.train, snapshot.test, trainer=trainer)
    print(f"run directory {run.path}: {run.n_train} train frames ({run.n_train_atoms} atoms), "
          f"{run.n_test} held-out test frames; reference data sha256 {snapshot.data_sha256[:12]}")
    selection = _selection_summary(snapshot.manifest)
    if args.plot_pool:
        selection = _plot_pool(args.spec, snapshot, out) or selection
    if prepare_only:
        record = training.training_provenance(config, run, None, snapshot.data_sha256, selection)
        atomic_write_json(out / "provenance.json", record)
        print(f"prepared for {trainer}: {run.path} (nep.in, train.xyz, test.xyz); see docs/training.md")
        return 0

    log_path = run.path / "train.log"  # beside the run: a failed run leaves the earlier result as it was
    print(f"training {config.generations} steps with neppo on {args.threads} CPU thread(s) "
          f"(log: {log_path})", file=sys.stderr)
    result = training.run_neppo(run.path, threads=args.threads, log_path=log_path, timeout_s=args.timeout)
    record = training.training_provenance(config, run, result, snapshot.data_sha256, selection)
    outputs = {out / name: (run.path / name).read_bytes() for name in (*KEPT_RUN_FILES, "train.log")}
    outputs[out / "loss.csv"] = loss_csv(result.loss_curve).encode()
    outputs[out / "loss.png"] = loss_png(result.loss_curve, config)
    outputs[out / "provenance.json"] = json_document(record).encode()  # last: it names the others' hashes
    atomic_write_files(outputs)
    result.nep_txt = out / "nep.txt"
    if not args.keep_run:
        shutil.rmtree(run.path)
    final = result.final
    print(f"trained {result.steps} steps in {result.wall_s:.1f} s: force RMSE train "
          f"{1000 * final.get('rmse_force_train_ev_per_a', float('nan')):.0f} / test "
          f"{1000 * final.get('rmse_force_test_ev_per_a', float('nan')):.0f} meV/Å, energy RMSE train "
          f"{1000 * final.get('rmse_energy_train_ev_per_atom', float('nan')):.1f} / test "
          f"{1000 * final.get('rmse_energy_test_ev_per_atom', float('nan')):.1f} meV/atom")
    print(f"model: {out / 'nep.txt'}   provenance: {out / 'provenance.json'}")
    if args.register:
        register_trained_model(args.register, out, record)
    return 0


def _selection_summary(manifest: dict[str, Any]) -> dict[str, Any] | None:
    selection = manifest.get("selection")
    if not selection:
        return None
    return {k: selection.get(k) for k in ("method", "pool_size", "selected", "selected_fraction")} | {
        "labelled": manifest.get("n_frames")}


def _plot_pool(spec: str, snapshot: Any, out: Path) -> dict[str, Any] | None:
    from ..files import atomic_write_bytes, atomic_write_json
    from ..pool_map import pool_map

    print("regenerating the DIRECT candidate pool for the PCA map (about a minute)", file=sys.stderr)
    pool = pool_map(spec, snapshot.manifest, snapshot.train + snapshot.test)
    summary = {"method": (snapshot.manifest.get("selection") or {}).get("method"), **pool.summary()}
    atomic_write_json(out / "pool.json", summary)
    atomic_write_bytes(out / "pool_pca.png", _pool_png(pool))
    print(f"pool {pool.pool_size} candidates, DIRECT kept {pool.n_selected} "
          f"({100 * pool.selected_fraction:.1f}%), labelled so far {pool.n_labelled} "
          f"({100 * pool.labelled_fraction:.1f}%): {out / 'pool_pca.png'}")
    return summary


def _figure(size: tuple[float, float]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=110)


def _png(fig: Any) -> bytes:
    """PNG bytes, rendered as the report's figures are (deterministic metadata)."""
    from ..report.plots import png as report_png

    return report_png(fig)


def _pool_png(pool: Any) -> bytes:
    import numpy as np

    fig = _figure((6.4, 5.0))
    ax = fig.add_subplot()
    x, y = pool.coords[:, 0], pool.coords[:, 1]
    split = np.array([s or "" for s in pool.split])
    ax.scatter(x, y, s=6, c="0.8", label=f"pool ({pool.pool_size})", rasterized=True)
    picked = pool.selected & (split == "")
    ax.scatter(x[picked], y[picked], s=16, facecolors="none", edgecolors="tab:blue",
               label=f"DIRECT pick, not yet labelled ({int(picked.sum())})")
    for name, colour, marker in (("train", "tab:green", "o"), ("test", "tab:red", "s")):
        mask = split == name
        ax.scatter(x[mask], y[mask], s=22, c=colour, marker=marker, label=f"labelled, {name} ({int(mask.sum())})")
    ratio = pool.explained_variance_ratio
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% of variance)")
    ax.set_title(f"DIRECT: {pool.n_selected}/{pool.pool_size} kept ({100 * pool.selected_fraction:.1f}%); "
                 "global PCA of the fingerprints", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def loss_csv(curve: list[dict[str, float]]) -> str:
    """loss.csv text: one row per reported step (`read_loss_curve`'s column names)."""
    columns = list(dict.fromkeys(k for row in curve for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in curve:
        writer.writerow({k: (int(v) if k == "step" else f"{v:.6g}") for k, v in row.items()})
    return buffer.getvalue()


def loss_png(curve: list[dict[str, float]], config: Any) -> bytes:
    """loss.png: total loss, force and energy RMSE (train, test) against step."""
    fig = _figure((9.0, 3.4))
    steps = [row["step"] for row in curve]
    panels = (("total_loss", "loss", 1.0, ""), ("rmse_force_{}_ev_per_a", "force RMSE", 1000.0, "meV/Å"),
              ("rmse_energy_{}_ev_per_atom", "energy RMSE", 1000.0, "meV/atom"))
    for k, (key, title, scale, unit) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        labels = ("",) if "{}" not in key else ("train", "test")
        for label in labels:
            column = key.format(label)
            values = [scale * row[column] for row in curve if column in row]
            if values and any(v > 0 for v in values):
                ax.plot(steps[:len(values)], values, label=label or None)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{title} {f'({unit})' if unit else ''}", fontsize=9)
        if len(labels) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"neppo, seed {config.seed}, batch {config.batch}; test split held out", fontsize=9, y=1.04)
    fig.subplots_adjust(wspace=0.35)
    return _png(fig)


def register_trained_model(name: str, out: Path, record: dict[str, Any]) -> None:
    """Register `out`/nep.txt as NAME (`register_local_model`); with a recipe's ensemble (the
    provenance `record` lists K ≥ 2 `members`), members 1..K-1 are copied from
    `out`/members/member-K/nep.txt to models/NAME/members/member-K/nep.txt and listed in the table's
    `ensemble` (`_ensemble_entries`). A failed registration puts the previous member files back."""
    from ..models import register_local_model, registry_path, registry_root

    data = record["training_data"]
    trainer = record.get("trainer", {})
    provenance = (out / "provenance.json").resolve().relative_to(registry_root(registry_path())).as_posix()
    extra = {"training": {
        "provenance": provenance,
        "trainer": f"{trainer.get('name')} {trainer.get('version')} (torch {trainer.get('torch')}, "
                   f"{trainer.get('device')}, {trainer.get('threads')} thread(s))",
        "steps": int(record["steps"]), "seed": int(record["seed"]), "wall_s": float(record["wall_s"]),
        "reference_data_sha256": data["reference_data_sha256"] or "",
        "n_train_frames": int(data["n_train_frames"]), "n_test_frames": int(data["n_test_frames"]),
    }}
    members = _ensemble_entries(name, out, record)
    if members:
        extra["ensemble"] = [{"path": path, "sha256": sha} for path, sha, _ in members]
    registered_before = _registered_members(name)
    restore = _write_members(name, members)
    try:
        new = register_local_model(
            name, out / "nep.txt",
            description=(f"Li-Si-C NEP4 trained here with neppo on {data['n_train_frames']} CP2K frames "
                         f"(train split; {data['n_test_frames']} held out), {record['steps']} steps"),
            licence="MIT (trained by the nepbench project on its own CP2K data)",
            citation="nepbench project model; trainer: neppo (N. Österbacka, P. Erhart), NEP: Z. Fan et al., "
                     "Phys. Rev. B 104, 104309 (2021)",
            extra=extra)
    except BaseException:
        restore()
        raise
    _remove_stale_members(name, registered_before - {path for path, _, _ in members})
    print(f"registered {name}: {new.source['path']} sha256 {new.source_sha256} "
          f"(registry {new.registry_file})" + (f" with {len(members)} further ensemble member(s)" if members else ""))


def _members_dir(name: str) -> Path:
    """models/NAME/members/ beside the registry, where a registered model's ensemble members lie."""
    from ..models import registry_path

    return registry_path().resolve().parent / name / "members"


def _ensemble_entries(name: str, out: Path, record: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    """(registry path, sha256, bytes) of each further ensemble member (1..K-1) of the training in
    `out`, [] when its provenance `record` lists fewer than 2 `members` (a single model: `nepbench
    train` without --recipe). The registry path is models/NAME/members/member-K/nep.txt relative
    to the repository root.

    Raises:
        ModelError naming the member's file: missing, not a valid model, or with another header
            (version, species) than member 0's `out`/nep.txt.
    """
    from ..errors import ModelError
    from ..models import registry_path, registry_root, validate_model_file
    from ..provenance import sha256_bytes

    count = len(record.get("members") or [])
    if count < 2:
        return []
    header = validate_model_file(out / "nep.txt")
    root, target = registry_root(registry_path()), _members_dir(name)
    entries = []
    for k in range(1, count):
        source = out / "members" / f"member-{k}" / "nep.txt"
        if not source.is_file():
            raise ModelError(f"{source}: ensemble member {k} of {count} not found (provenance.json lists {count} "
                             "members); nothing registered")
        found = validate_model_file(source)
        if found != header:
            raise ModelError(f"{source}: header {found[0]} {' '.join(found[1])} differs from member 0's "
                             f"({header[0]} {' '.join(header[1])}); nothing registered")
        data = source.read_bytes()
        path = (target / f"member-{k}" / "nep.txt").relative_to(root).as_posix()
        entries.append((path, sha256_bytes(data), data))
    return entries


def _write_members(name: str, members: list[tuple[str, str, bytes]]) -> Any:
    """Write the member files (atomically, as one set) and return the function that puts the
    previous ones back (or removes the new ones) should the registration fail."""
    from ..files import atomic_write_files
    from ..models import registry_path, registry_root

    root = registry_root(registry_path())
    targets = {root / path: data for path, _, data in members}
    previous = {path: (path.read_bytes() if path.is_file() else None) for path in targets}
    atomic_write_files(targets)

    def restore() -> None:
        back = {path: data for path, data in previous.items() if data is not None}
        if back:
            atomic_write_files(back)
        for path, data in previous.items():
            if data is None:
                path.unlink(missing_ok=True)
    return restore


def _registered_members(name: str) -> set[str]:
    """The ensemble paths NAME's registry table lists now (empty when it has none, or the registry
    cannot be read: the registration then fails with the reason)."""
    from ..errors import ModelError
    from ..models import load_registry

    try:
        record = load_registry().get(name)
    except ModelError:
        return set()
    return {member.path for member in record.ensemble} if record else set()


def _remove_stale_members(name: str, stale: set[str]) -> None:
    """Remove the member files of NAME's earlier ensemble that the new table no longer lists (a
    smaller ensemble, or none), where they lie under models/NAME/members/, and each folder left empty."""
    from ..models import registry_path, registry_root

    root, folder = registry_root(registry_path()), _members_dir(name)
    for path in sorted(stale):
        file = root / path
        if file.is_relative_to(folder) and file.is_file():
            file.unlink()
            for parent in (file.parent, folder):
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
