"""Start-up and the torch-free core: which commands import what, and what works without PyTorch.

pytest itself has imported torch (conftest), so every check runs the commands in
a fresh Python process: `PROBE` runs a list of commands through click's
CliRunner in one process and reports, after each, its exit code, its output and
which heavy libraries are loaded by then. With `--hide-torch` the process
cannot import torch at all, as if it were not installed: `import torch` raises
ModuleNotFoundError and `importlib.util.find_spec("torch")` is None.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from cli_helpers import run
from click.testing import CliRunner

from compofa.cli import COMMANDS, main

#: The libraries a command that does not need them must not load.
HEAVY = ("torch", "onnx", "onnxruntime", "yaml", "matplotlib")
INSTALL_HINT = "pip install 'compofa[torch]'"

PROBE = r'''
import importlib.machinery, json, sys

if sys.argv[1] == "--hide-torch":
    class _HiddenTorch:
        """The path finder, blind to torch: the process behaves as if torch were not installed."""
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.partition(".")[0] == "torch":
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)
    sys.meta_path[:] = [_HiddenTorch if f is importlib.machinery.PathFinder else f for f in sys.meta_path]

from click.testing import CliRunner
from compofa.cli import main

reports = []
for command in json.loads(sys.argv[2]):
    result = CliRunner().invoke(main, command)
    reports.append({
        "command": command, "exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
        "exception": None if result.exception is None or isinstance(result.exception, SystemExit)
        else repr(result.exception),
        "loaded": [name for name in {heavy} if name in sys.modules],
    })
print(json.dumps(reports))
'''.replace("{heavy}", repr(HEAVY))


def probe(commands: list[list[str]], hide_torch: bool = False, cwd: Path | None = None) -> list[dict[str, Any]]:
    """Run `commands` in order in one fresh process; one report per command."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--hide-torch" if hide_torch else "--", json.dumps(commands)],
        capture_output=True, text=True, timeout=600, cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reports: list[dict[str, Any]] = json.loads(done.stdout)
    return reports


def _explain(report: dict[str, Any]) -> str:
    return (f"compofa {' '.join(report['command'])}: exit {report['exit_code']}, {report['exception'] or ''}\n"
            f"{report['stdout'][-1500:]}\n{report['stderr'][-1500:]}")


@pytest.fixture(scope="module")
def lut_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small latency table of lookup-table estimates (no torch, no measuring)."""
    path = tmp_path_factory.mktemp("startup") / "lut.db"
    result = run("profile", "--space", "compofa", "--device", "lut:note10", "--table", str(path), "--limit", "5",
                 "--quiet")
    assert result.exit_code == 0, result.output
    return path


# -- the registry ------------------------------------------------------------------------------


def test_registry_lists_every_command_without_importing_it() -> None:
    """Each lazy entry names a real command, under its own name, whose short help is the registry's."""
    for name, entry in COMMANDS.items():
        command = entry.load()
        assert command.name == name, entry.target
        assert entry.help == command.get_short_help_str(limit=10_000), (
            f"COMMANDS[{name!r}].help in compofa/cli/__init__.py differs from the command's docstring")


def test_help_listing_equals_the_eager_one() -> None:
    """`compofa --help` built from the registry reads exactly as click would print it with every command loaded."""
    lazy = CliRunner().invoke(main, ["--help"], prog_name="compofa").output
    eager = click.Group("compofa", help=main.help, params=main.params,
                        context_settings={"help_option_names": ["-h", "--help"]})
    for name, entry in COMMANDS.items():
        eager.add_command(entry.load(), name)
    expected = CliRunner().invoke(eager, ["--help"], prog_name="compofa").output
    assert lazy == expected
    for name in COMMANDS:
        assert f"  {name} " in lazy


def test_unknown_command_is_one_line() -> None:
    result = run("profiel")
    assert result.exit_code == 2 and "No such command 'profiel'" in result.stderr


# -- start-up ---------------------------------------------------------------------------------


def test_quick_commands_import_no_torch(lut_table: Path) -> None:
    """--help, --version, spaces, table show, a LUT search and devices, run in one process, never import torch."""
    commands = [["--help"], ["--version"], ["spaces"], ["table", "show", str(lut_table)],
                ["search", "--space", "compofa", "--latency", "lut:note10", "--target", "25%"], ["devices"]]
    reports = probe(commands)
    for report in reports:
        assert report["exit_code"] == 0, _explain(report)
        assert not {"torch", "matplotlib"} & set(report["loaded"]), f"{_explain(report)}loaded {report['loaded']}"
    texts = {report["command"][0]: report["stdout"] for report in reports}
    assert "compofa-r" in texts["search"] and "5 entries" in texts["table"] and "onnxruntime" in texts["devices"]


@pytest.mark.parametrize("commands, allowed", [
    ([["--help"], ["--version"], ["spaces"], ["devices"]], ()),
    ([["table", "show", "{table}"]], ()),
    ([["search", "--space", "compofa", "--latency", "lut:note10", "--target", "25%"]], ("yaml",)),
], ids=["help-version-spaces-devices", "table-show", "search-lut"])
def test_quick_commands_import_only_what_they_use(
    commands: list[list[str]], allowed: tuple[str, ...], lut_table: Path
) -> None:
    """Listing, describing and reading load no ONNX, ONNX Runtime, YAML or matplotlib; a LUT search reads YAML."""
    reports = probe([[part.replace("{table}", str(lut_table)) for part in command] for command in commands])
    for report in reports:
        assert report["exit_code"] == 0, _explain(report)
        loaded = set(report["loaded"]) - set(allowed)
        assert not loaded, f"compofa {' '.join(report['command'])} (or a command before it) imported {sorted(loaded)}"


# -- without torch ----------------------------------------------------------------------------


def test_main_job_runs_without_torch(tmp_path: Path) -> None:
    """`make run`'s commands, on a few subnets, in a process where torch cannot be imported."""
    measured, estimated = str(tmp_path / "latency.db"), str(tmp_path / "lut.db")
    commands = [
        ["profile", "--space", "compofa", "--device", "onnxruntime", "--table", measured, "--limit", "5",
         "--min-rounds", "2", "--max-rounds", "2", "--round-seconds", "0.05", "--quiet"],
        ["table", "show", measured, "--bucket", "auto"],
        # a table search needs every subnet: the shipped lookup table estimates all 243 at once
        ["profile", "--space", "compofa", "--device", "lut:note10", "--table", estimated, "--quiet"],
        ["search", "--space", "compofa", "--latency", f"table:{estimated}", "--target", "25%,50%,75%",
         "-o", str(tmp_path / "search.json")],
        ["report", "--table", measured, "--table", estimated, "-o", str(tmp_path / "report"), "--per-bucket", "5",
         "--generations", "10", "--quiet"],
    ]
    reports = probe(commands, hide_torch=True, cwd=tmp_path)
    for report in reports:
        assert report["exit_code"] == 0, _explain(report)
        assert "torch" not in report["loaded"]
    assert "profiled 5 subnets" in reports[0]["stdout"]
    assert len(json.loads((tmp_path / "search.json").read_text())["results"]) == 3
    assert (tmp_path / "report" / "index.html").stat().st_size > 0


def test_every_onnx_runtime_path_runs_without_torch(tmp_path: Path) -> None:
    """`lut build`, `lut validate` and a search that measures on demand (`device:onnxruntime`), short settings,
    in a process where torch cannot be imported."""
    lut, measured, memo = tmp_path / "lut", str(tmp_path / "latency.db"), str(tmp_path / "memo.db")
    quick = ["--max-rounds", "3", "--round-seconds", "0.02"]  # lut build measures each layer 3 rounds at least
    commands = [
        ["lut", "build", "--space", "compofa", "--device", "onnxruntime", "--resolution", "160", *quick,
         "--target-ci", "0.5", "-o", str(lut), "--quiet"],
        ["profile", "--space", "compofa", "--device", "onnxruntime", "--resolution", "160", "--table", measured,
         "--limit", "4", "--min-rounds", "2", *quick, "--quiet"],
        ["lut", "validate", "--lut", str(lut), "--table", measured, "--calibrate", "0"],
        ["search", "--space", "compofa", "--latency", "device:onnxruntime", "--resolution", "160", "--table", memo,
         "--strategy", "evolution", "--population", "4", "--generations", "1", "--round-seconds", "0.02",
         "--min-rounds", "1", "--max-rounds", "1", "--target", "1000", "--quiet"],
    ]
    reports = probe(commands, hide_torch=True, cwd=tmp_path)
    for report in reports:
        assert report["exit_code"] == 0, _explain(report)
        assert "torch" not in report["loaded"]
    assert (lut / "160_lookup_table.yaml").stat().st_size > 0
    assert "1000" in reports[3]["stdout"] and "compofa-r160-" in reports[3]["stdout"]


SMALL = "compofa-r224-k33e33_k55e33_k33e33_k33e33_k55e33"
#: Commands that need torch, and what their one line must say besides the install hint.
TORCH_COMMANDS = {
    "train": (["train", "--data", "{tmp}/data", "-o", "{tmp}/run"], "training needs PyTorch"),
    "eval": (["eval", "--checkpoint", "{tmp}/w.pt", "--data", "{tmp}/data"], "evaluating subnets needs PyTorch"),
    "digits": (["digits", "-o", "{tmp}/digits"], "needs PyTorch"),
    "predictor train": (["predictor", "train", "--table", "{tmp}/t.db", "-o", "{tmp}/p.pth"],
                        "fitting a predictor needs PyTorch"),
    "export .pt": (["export", SMALL, "-o", "{tmp}/net.pt"], "needs PyTorch"),
    "export --checkpoint": (["export", SMALL, "-o", "{tmp}/net.onnx", "--checkpoint", "{tmp}/w.pt"], "needs PyTorch"),
    "profile --device torch": (["profile", "--device", "torch", "--table", "{tmp}/t.db", "--limit", "1"],
                               "device 'torch' is not available here"),
}


@pytest.mark.parametrize("case", sorted(TORCH_COMMANDS))
def test_torch_commands_say_how_to_install_it(case: str, tmp_path: Path) -> None:
    """Without torch, a command needing it fails in one line naming the extra, exit code 2, having written nothing."""
    arguments, says = TORCH_COMMANDS[case]
    (tmp_path / "w.pt").write_bytes(b"")
    command = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    before = sorted(p.name for p in tmp_path.iterdir())
    (report,) = probe([command], hide_torch=True)
    assert report["exit_code"] == 2, _explain(report)
    lines = report["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in report["stdout"], _explain(report)
    assert says in lines[0] and INSTALL_HINT in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
