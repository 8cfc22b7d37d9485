"""`nepbench systems list|build`: the seeded structure builders from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("systems", help="list or build the seeded structure builders",
                            epilog="example: nepbench systems build a-LixSi --seed 3 -p x=2.5 --out cell.extxyz",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = parser.add_subparsers(dest="systems_command", metavar="ACTION", required=True)
    lst = ssub.add_parser("list", help="builder names, motif families and minimum distances")
    lst.set_defaults(func=_list)
    build = ssub.add_parser("build", help="build one structure and write it as extxyz")
    build.add_argument("name")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="builder parameter; VALUE is parsed as JSON when it can be (e.g. x=2.5)")
    build.add_argument("--out", required=True, help="output file (.extxyz, .extxyz.gz or .extxyz.xz)")
    build.set_defaults(func=_build)


def _list(args: argparse.Namespace) -> int:
    from ..systems import BUILDERS

    for name, entry in BUILDERS.items():
        print(f"{name:16s} {entry.motif:12s} min distance {entry.min_distance_a:.2f} Å")
    return 0


def parse_params(items: list[str]) -> dict[str, object]:
    """KEY=VALUE strings → dict; JSON values where they parse (numbers, lists), else strings."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"parameter {item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _build(args: argparse.Namespace) -> int:
    from ..structures import write_structures
    from ..systems import build

    params = parse_params(args.param)
    try:
        atoms = build(args.name, seed=args.seed, **params)
    except (ValueError, TypeError, AssertionError, ArithmeticError) as exc:  # a value the builder cannot use
        message = str(exc) or type(exc).__name__
        if message.startswith(("unknown builder", "builder ")):
            raise ConfigError(message) from None
        shown = " ".join(f"{k}={v!r}" for k, v in params.items()) or "its defaults"
        raise ConfigError(f"builder {args.name!r} cannot build with {shown}: {message}") from None
    if Path(args.out).is_dir():
        raise ConfigError(f"{args.out}: is a folder; --out takes a file name (.extxyz, .extxyz.gz or .extxyz.xz)")
    write_structures(args.out, [atoms])
    print(f"{args.out}: {atoms.get_chemical_formula()} ({len(atoms)} atoms)")
    return 0
