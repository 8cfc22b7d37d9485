"""`nepbench` command line. Sub-commands live in nepbench/commands/, one module each.

Errors are one line for the user (exit 1, or the error's own code); `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

from . import __version__, commands
from .errors import NepbenchError

EPILOG = """examples:
  nepbench models fetch nep89-lisic
  nepbench run suites/quick.toml --out reports/quick
  nepbench verify reports/quick
  nepbench reference verify
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nepbench",
        description="Reproducible benchmarks of NEP potentials for Li-Si-C anodes against CP2K DFT.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nepbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # a sub-command's private helper module, not a sub-command
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


#: Exit status of an error no check foresaw: 2, "cannot judge" for verify and gate, never a verdict.
INTERNAL_ERROR_EXIT = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NepbenchError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"nepbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nepbench: interrupted; finished results are kept and a rerun resumes", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # a case no check foresaw: still one line, and never 0 or 1 ("a claim fails")
        if args.debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        print(f"nepbench: error: {type(exc).__name__}{where}: {exc} "
              "(unexpected; rerun with --debug for the traceback and report it)", file=sys.stderr)
        return INTERNAL_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
