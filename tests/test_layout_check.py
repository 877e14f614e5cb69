""".ci/check_layout.py: modules over 450 lines and CLI functions over 60 (parser declarations aside) fail CI."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

SCRIPT = Path(ROOT) / ".ci" / "check_layout.py"
_spec = importlib.util.spec_from_file_location("check_layout", SCRIPT)
check_layout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_layout)


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def function(name: str, body_lines: int, statement: str = "x = 1") -> str:
    """A function of ``body_lines + 1`` lines: its def and ``body_lines`` copies of ``statement``."""
    return f"def {name}(parser):\n" + "".join(f"    {statement}\n" for _ in range(body_lines))


def test_a_module_of_451_lines_fails_and_one_of_450_passes(tmp_path):
    tree(tmp_path, {"jaxstyle/long.py": "x = 1\n" * 451, "tests/ok.py": "x = 1\n" * 450,
                    "benchmarks/deep/long.py": "# a comment\n" * 451, "elsewhere/long.py": "x = 1\n" * 999})
    assert check_layout.offenses(tmp_path) == ["benchmarks/deep/long.py: 451 lines (at most 450)",
                                               "jaxstyle/long.py: 451 lines (at most 450)"]


def test_a_long_cli_function_fails_and_a_long_one_elsewhere_is_left_to_the_module_rule(tmp_path):
    tree(tmp_path, {"jaxstyle/cli/video.py": "import sys\n\n\n" + function("run", 60),
                    "jaxstyle/cli/plan.py": function("run", 59),
                    "jaxstyle/jobs/video.py": function("run_video", 200)})
    assert check_layout.offenses(tmp_path) == [
        "jaxstyle/cli/video.py:4: function run is 61 lines (at most 60, parser declarations aside)"]


def test_a_method_and_a_nested_function_are_measured_with_their_decorators(tmp_path):
    inner = "\n".join("    " + line for line in function("inner", 59).splitlines())
    nested = "def run(args):\n    @staticmethod\n" + inner
    method = "class Progress:\n    @property\n    " + function("bar", 59).replace("\n", "\n    ").rstrip() + "\n"
    tree(tmp_path, {"jaxstyle/cli/a.py": nested + "\n", "jaxstyle/cli/b.py": method})
    found = check_layout.offenses(tmp_path)
    assert found == ["jaxstyle/cli/a.py:1: function run is 62 lines (at most 60, parser declarations aside)",
                     "jaxstyle/cli/a.py:3: function inner is 61 lines (at most 60, parser declarations aside)",
                     "jaxstyle/cli/b.py:3: function bar is 61 lines (at most 60, parser declarations aside)"]


def test_a_long_parser_declaration_passes_but_other_code_in_it_counts(tmp_path):
    declarations = (
        "def add_options(parser):\n"
        + '    parser.add_argument("--size", type=int, default=None,\n                        help="px")\n' * 40
        + '    sub = parser.add_subparsers(dest="command")\n    st = sub.add_parser("stylize")\n'
        + '    add_style_options(st)\n    st.set_defaults(iterations=50)\n'
        + '    for p in (st,):\n        p.add_argument("--list-layers")\n' * 20)
    assert check_layout.offenses(tree(tmp_path, {"jaxstyle/cli/options.py": declarations})) == []
    mixed = declarations + "    x = 1\n" * 40
    (tmp_path / "jaxstyle/cli/options.py").write_text(mixed)
    assert check_layout.offenses(tmp_path) == [
        "jaxstyle/cli/options.py:1: function add_options is 61 lines (at most 60, parser declarations aside)"]


def test_the_script_prints_one_line_per_offender_and_exits_1(tmp_path):
    tree(tmp_path, {"tests/long.py": "x = 1\n" * 500, "jaxstyle/cli/run.py": function("run", 70)})
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout.splitlines() == [
        "jaxstyle/cli/run.py:1: function run is 71 lines (at most 60, parser declarations aside)",
        "tests/long.py: 500 lines (at most 450)"]
    (tmp_path / "tests/long.py").write_text("x = 1\n")
    (tmp_path / "jaxstyle/cli/run.py").write_text(function("run", 10))
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "")
