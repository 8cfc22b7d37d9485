"""Static checks of the code that tests may not reach: a name used but never defined or imported
(such as a helper called in a module that lacks its import) fails here, not when a background
job starts hours later. pyflakes reads the source without importing it."""

from __future__ import annotations

from pathlib import Path

from pyflakes import checker

ROOT = Path(__file__).resolve().parents[1]
#: pyflakes messages that are defects: a name that cannot resolve at run time, or an import or
#: argument that shadows another. Unused imports and variables are style, left to review.
DEFECTS = ("UndefinedName", "UndefinedLocal", "UndefinedExport", "DuplicateArgument",
           "ReturnOutsideFunction", "YieldOutsideFunction", "ContinueOutsideLoop", "BreakOutsideLoop",
           "TooManyExpressionsInStarredAssignment", "PercentFormatInvalidFormat", "StringDotFormatExtraNamedArguments",
           "IsLiteral", "FStringMissingPlaceholders")


def _python_files() -> list[Path]:
    return sorted(p for folder in ("src", "benchmarks", "scripts", "tests") for p in (ROOT / folder).rglob("*.py"))


def test_no_module_uses_a_name_it_never_defines():
    import ast

    found = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for message in checker.Checker(tree, filename=str(path)).messages:
            if type(message).__name__ in DEFECTS:
                found.append(f"{path.relative_to(ROOT)}:{message.lineno}: {message.message % message.message_args}")
    assert not found, "\n".join(found)


def test_the_check_sees_an_undefined_name(tmp_path):
    import ast

    source = "from x import known\n\ndef f():\n    return unknown_name(known)\n"
    messages = checker.Checker(ast.parse(source), filename="m.py").messages
    assert [type(m).__name__ for m in messages] == ["UndefinedName"]
