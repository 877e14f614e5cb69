"""The house's size rules, checked with the ast module (run by .ci/run beside lint-imports).

- A module: every ``*.py`` under ``jaxstyle/``, ``tests/`` and ``benchmarks/`` has at most
  ``MAX_MODULE_LINES`` (450) lines (``str.splitlines()`` of the file, blank lines and comments included).
- A CLI function: every function or method defined in ``jaxstyle/cli/`` (nested ones too, each on
  its own) has at most ``MAX_CLI_FUNCTION_LINES`` (60) lines, counted from its first decorator or
  ``def`` to its last line, less the lines of its parser declarations. A parser declaration is a
  statement (an expression, or an assignment such as ``st = sub.add_parser(...)``) whose value is a
  call of a method named in ``DECLARATIONS`` (``add_argument``, ``add_parser``, ...) or of a
  function of the CLI's own named ``add_*_options``: so a function that declares a subcommand's
  options may be as long as its options are many, and any other code in it still counts.

Prints one line per offender (``path: N lines (at most 450)``; ``path:LINE: function NAME is N
lines (at most 60, parser declarations aside)``) and exits 1 if there is one, else 0.
Usage: ``python .ci/check_layout.py [ROOT]`` (default: the repository holding this file).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

MAX_MODULE_LINES = 450
MAX_CLI_FUNCTION_LINES = 60
FOLDERS = ("benchmarks", "jaxstyle", "tests")
CLI_FOLDER = "jaxstyle/cli"
DECLARATIONS = frozenset({"add_argument", "add_argument_group", "add_mutually_exclusive_group", "add_parser",
                          "add_subparsers", "set_defaults"})
OPTION_GROUP = re.compile(r"_?add_\w*_options$")  # the CLI's own groups of declarations


def is_declaration(statement: ast.stmt) -> bool:
    """Whether ``statement`` only declares options: ``parser.add_argument(...)``, ``st = sub.add_parser(...)``,
    ``add_style_options(st)``."""
    if not isinstance(statement, (ast.Expr, ast.Assign, ast.AnnAssign)) or not isinstance(statement.value, ast.Call):
        return False
    func = statement.value.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in DECLARATIONS or bool(OPTION_GROUP.match(name))


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines of ``node`` (decorators included) less those of the parser declarations in it."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    declared = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.stmt) and is_declaration(inner):
            declared.update(range(inner.lineno, inner.end_lineno + 1))
    return node.end_lineno - first + 1 - len(declared)


def module_offenses(path: Path, shown: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    return [f"{shown}: {lines} lines (at most {MAX_MODULE_LINES})"] if lines > MAX_MODULE_LINES else []


def cli_offenses(path: Path, shown: str) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        return [f"{shown}:{exc.lineno}: cannot be parsed ({exc.msg})"]
    functions = sorted((node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))),
                       key=lambda node: node.lineno)
    return [f"{shown}:{node.lineno}: function {node.name} is {lines} lines (at most {MAX_CLI_FUNCTION_LINES}, "
            f"parser declarations aside)" for node in functions
            if (lines := function_lines(node)) > MAX_CLI_FUNCTION_LINES]


def offenses(root: Path) -> list[str]:
    """Every breach of the rules under ``root``, one line each, in path order."""
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" in path.parts or ".venv" in path.parts:
                continue
            shown = path.relative_to(root).as_posix()
            found += module_offenses(path, shown)
            if shown.startswith(CLI_FOLDER + "/"):
                found += cli_offenses(path, shown)
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    found = offenses(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
