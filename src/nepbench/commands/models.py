"""`nepbench models list|fetch|show`: the model registry and its cache."""

from __future__ import annotations

import argparse
import sys

from .. import models

EPILOG = """examples:
  nepbench models list
  nepbench models fetch nep89-lisic
  nepbench models show nep89-lisic
  nepbench models show chgnet-0.3.0      (an ASE-calculator comparator: pip installs it, fetch checks it)
  nepbench models show path/to/nep.txt
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list, fetch or show registry models",
                            description="The model registry (models/registry.toml) and its cache.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    msub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    lst = msub.add_parser("list", help="registry models, their species and whether they are cached "
                                        "(BAD sha256: the cached file no longer matches; fetch --force)")
    lst.add_argument("--registry", default=None, help="registry file (default models/registry.toml)")
    lst.set_defaults(func=_list)

    fetch = msub.add_parser("fetch", help="download, derive and verify a model into the cache")
    fetch.add_argument("name", help="registry name, e.g. nep89-lisic")
    fetch.add_argument("--force", action="store_true", help="download and derive again")
    fetch.add_argument("--registry", default=None, help="registry file (default models/registry.toml)")
    fetch.set_defaults(func=_fetch)

    show = msub.add_parser("show", help="a registry record (or a nep.txt's header) and cache state")
    show.add_argument("name", help="registry name or path to a nep.txt")
    show.add_argument("--registry", default=None, help="registry file (default models/registry.toml)")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    registry = models.load_registry(args.registry)
    print(f"registry: {args.registry or models.registry_path()}   cache: {models.cache_root()}")
    for name, record in registry.items():
        if record.kind == models.ASE_KIND:  # installed by pip (requirements-comparators.txt), checked in place
            cached = _ase_state(record)
        elif record.source.get("kind") == "local":
            cached = "local"
        elif not models.cached_model_path(name).is_file():
            cached = "not cached"
        else:  # a file that no longer matches the registry is not "cached": using it would be refused
            from ..provenance import sha256_file

            ok = sha256_file(models.cached_model_path(name)) == record.sha256
            cached = "cached" if ok else "BAD sha256"  # `nepbench models fetch NAME --force` replaces it
        default = " (default)" if name == models.DEFAULT_MODEL else ""
        print(f"  {name:14s} {record.nep_version:9s} {len(record.species):3d} species  {cached:10s}  "
              f"{record.description}{default}")
    return 0


def _ase_state(record: models.ModelRecord) -> str:
    """"installed" (package at the pinned version, weights file with the registered sha256),
    "not installed", "version X" (another version installed) or "BAD sha256" / "no weights"."""
    from ..provenance import sha256_file

    found = models.installed_version(record.source["package"])
    if found is None:
        return "not installed"
    if found != record.source["version"]:
        return f"version {found}"
    path = models.ase_weights_path(record)
    if not path.is_file():
        return "no weights"
    return "installed" if sha256_file(path) == record.sha256 else "BAD sha256"


def _fetch(args: argparse.Namespace) -> int:
    registry = models.load_registry(args.registry)
    if args.name in registry and registry[args.name].kind == models.ASE_KIND:
        path = models.fetch_model(args.name, registry)  # checks the installed package's file; never downloads
        print(f"{args.name}: {path}")
        print(f"  sha256 {registry[args.name].sha256} (verified; installed with pip, not cached)")
        return 0
    if args.name in registry and (args.force or not models.cached_model_path(args.name).is_file()):
        print(f"{args.name}: fetching {registry[args.name].source_label()} and checking sha256 "
              f"(a few seconds)", file=sys.stderr)
    path = models.fetch_model(args.name, registry, force=args.force)
    print(f"{args.name}: {path}")
    print(f"  sha256 {registry[args.name].sha256} (verified)")
    return 0


def _show(args: argparse.Namespace) -> int:
    registry = models.load_registry(args.registry)
    if args.name not in registry:
        info = models.resolve_model(args.name, fetch=False, registry=registry)
        print(f"{info.name}: user model {info.path}")
        print(f"  nep_version {info.nep_version}\n  species     {' '.join(info.species)}")
        print(f"  sha256      {info.sha256}")
        return 0
    record = registry[args.name]
    path = models.cached_model_path(record.name)
    print(f"{record.name}: {record.description}")
    print(f"  source      {record.source_label()}")
    print(f"  source sha  {record.source_sha256}")
    if record.derived:
        print(f"  derived     keep_species {' '.join(record.derived.keep_species)} ({record.derived.tool})")
    print(f"  sha256      {record.sha256}")
    if record.kind == models.ASE_KIND:
        source = record.source
        print("  kind        ASE calculator (a comparator; runs on the ase_calc engine)")
        print(f"  factory     {source['factory']}({', '.join(f'{k}={v!r}' for k, v in source.get('arguments', {}).items())}"
              + (f"{', ' if source.get('arguments') else ''}{source['weights_argument']}=<weights>"
                 if source.get("weights_argument") else "") + ")")
        if "cutoff_a" in source:
            print(f"  cutoff      {source['cutoff_a']:g} Å (sees periodic images: non-periodic structures need this vacuum)")
        print(f"  species     {len(record.species)}: {' '.join(record.species)}")
        print(f"  licence     {record.licence}\n  citation    {record.citation}")
        state = _ase_state(record)
        where = models.ase_weights_path(record) if state != "not installed" else "—"
        print(f"  installed   {state} ({source['package']}=={source['version']}: {where})")
        return 0
    print(f"  nep_version {record.nep_version}\n  species     {' '.join(record.species)}")
    print(f"  licence     {record.licence}\n  citation    {record.citation}")
    if record.source.get("kind") == "local":
        local = models.local_model_path(record)
        print(f"  file        {local} (committed; {'present' if local.is_file() else 'missing'})")
    else:
        print(f"  cache       {path} ({'present' if path.is_file() else 'not fetched'})")
    return 0
