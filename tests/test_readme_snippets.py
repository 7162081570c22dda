"""README.md's examples work as written.

Every ```python block runs, unchanged, in a fresh process (this environment's Python) in an empty folder.
A snippet that reads a file a user would bring gets a small stand-in made here first (`INPUTS`): OFA's
released supernet checkpoint, which cannot be downloaded in a test, is replaced by a randomly initialized
supernet of the same architecture saved by the reference `ofa` code in the released file's layout, and the
ImageFolder a snippet reads is the digits dataset `compofa digits` writes.

Every `compofa ...` command line of the ```sh, ```console, ```bash and ```yaml blocks (also inside
`torchrun -m compofa`, `sh -c '...'` and `--wrap '...'`) must parse against the real CLI: click builds the
command's context from those arguments, so an unknown command or option, a missing required one or a value
its type refuses fails. A file argument that must exist and does not (the README names the user's files)
passes parsing. The commands that are quick and need nothing but compofa also run; every other line's run
test is skipped with the reason, so `pytest -ra` lists the lines that were parsed only.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import build_reference

from compofa.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL_LANGUAGES = {"sh", "shell", "bash", "console"}
#: How long one Python snippet may take, in seconds: a guard against a hang (the supernet one takes 10-50 s here).
SNIPPET_TIMEOUT = 300


@dataclass(frozen=True)
class CodeBlock:
    language: str
    line: int  # README line of the block's first line of code
    text: str


@dataclass(frozen=True)
class CommandLine:
    line: int  # README line the command starts on
    argv: tuple[str, ...]  # the arguments after `compofa`
    via: str = ""  # the README's command that runs it, when that is not the line itself (`make run`)

    @property
    def label(self) -> str:
        via = f"`{self.via}` runs " if self.via else ""
        return f"README.md line {self.line}: {via}`{shlex.join(('compofa', *self.argv))}`"


def code_blocks(text: str) -> list[CodeBlock]:
    """The fenced blocks of a Markdown text, with their language (empty when none is given)."""
    blocks: list[CodeBlock] = []
    opened: tuple[str, int] | None = None
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("```"):
            if opened is not None:
                body.append(line)
        elif opened is None:
            opened, body = (line[3:].strip(), number + 1), []
        else:
            blocks.append(CodeBlock(opened[0], opened[1], "\n".join(body) + "\n"))
            opened = None
    assert opened is None, f"README.md line {opened[1] - 1}: a code block is never closed"
    return blocks


BLOCKS = code_blocks(README.read_text(encoding="utf-8"))
PYTHON_BLOCKS = [block for block in BLOCKS if block.language == "python"]


# -- Python snippets ------------------------------------------------------------------------------------------


def _ofa_checkpoint(path: Path) -> None:
    """OFA's released w1.2 MobileNetV3 supernet's layout (``{"state_dict": ...}`` of the reference network,
    kernel-transform matrices included), with the reference code's own random initialization."""
    network = build_reference("mobilenetv3", 1.2, transform=True)
    torch.save({"state_dict": network.state_dict()}, path)


def _digits(path: Path) -> None:
    from compofa.supernet.train.data import write_digits

    write_digits(path)


#: The files README snippets read, by the name they use, and how to make a stand-in of each.
INPUTS: dict[str, Callable[[Path], None]] = {
    "ofa_mbv3_d234_e346_k357_w1.2.pth": _ofa_checkpoint,
    "digits/": _digits,
}


@pytest.fixture(scope="module")
def snippet_inputs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The stand-in for an `INPUTS` name, made once for the module on first use."""
    folder = tmp_path_factory.mktemp("readme-inputs")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            path = folder / name.rstrip("/")
            INPUTS[name](path)
            made[name] = path
        return made[name]

    return get


def _readme_line(block: CodeBlock, stderr: str) -> int:
    """The README line of the snippet's innermost traceback frame, else the snippet's first line."""
    lines = re.findall(r'File "[^"]*snippet\.py", line (\d+)', stderr)
    return block.line + int(lines[-1]) - 1 if lines else block.line


def test_readme_has_python_snippets() -> None:
    assert len(PYTHON_BLOCKS) >= 2, "README.md lost its Python examples (or this test's reading of them)"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"line{block.line}" for block in PYTHON_BLOCKS])
def test_python_snippet_runs(block: CodeBlock, snippet_inputs: Callable[[str], Path], tmp_path: Path) -> None:
    for name in INPUTS:
        if name in block.text:
            (tmp_path / name.rstrip("/")).symlink_to(snippet_inputs(name))
    (tmp_path / "snippet.py").write_text(block.text, encoding="utf-8")
    env = {**_environment(), "COMPOFA_CACHE_DIR": str(tmp_path / ".cache")}
    try:
        result = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=SNIPPET_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"README.md line {block.line}: the Python snippet did not finish in {SNIPPET_TIMEOUT} s")
    if result.returncode != 0:
        pytest.fail(f"README.md line {_readme_line(block, result.stderr)}: the Python snippet starting on line "
                    f"{block.line} failed (exit code {result.returncode}):\n{result.stderr[-3000:]}")


def _environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("COMPOFA_")}


# -- command lines --------------------------------------------------------------------------------------------


def _shell_lines(block: CodeBlock) -> Iterator[tuple[int, str]]:
    """(README line, text) of each command of a shell block, continuation lines joined, prompts removed."""
    pending: list[str] = []
    start = block.line
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            start = block.line + offset
        text = line[2:] if line.startswith("$ ") else line
        if text.rstrip().endswith("\\"):
            pending.append(text.rstrip()[:-1])
            continue
        yield start, " ".join([*pending, text])
        pending = []


def _yaml_strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _yaml_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _yaml_strings(value)


def _invocations(words: list[str]) -> Iterator[list[str]]:
    """The argument lists of every `compofa` a shell command runs, nested `sh -c '...'` strings included."""
    segment: list[str] = []
    for word in [*words, ";"]:
        if word in {"|", "||", "&&", ";", "&"}:
            yield from _segment_invocations(segment)
            segment = []
        else:
            segment.append(word)


def _segment_invocations(segment: list[str]) -> Iterator[list[str]]:
    if not segment:
        return
    if Path(segment[0]).name == "compofa":
        yield segment[1:]
    elif "-m" in segment and segment.index("-m") + 1 < len(segment) and segment[segment.index("-m") + 1] == "compofa":
        yield segment[segment.index("-m") + 2:]  # python -m compofa, torchrun ... -m compofa
    else:  # a command handed on as one string: sh -c '...', sbatch --wrap '...'
        for word in segment[1:]:
            if "compofa " in word:
                yield from _invocations(shlex.split(word, comments=True))


def command_lines() -> list[CommandLine]:
    found: list[CommandLine] = []
    for block in BLOCKS:
        if block.language in SHELL_LANGUAGES:
            lines = list(_shell_lines(block))
        elif block.language == "yaml":
            lines = [(block.line, text) for text in _yaml_strings(yaml.safe_load(block.text))]
        else:
            continue
        for number, text in lines:
            words = shlex.split(text, comments=True)
            for argv in _invocations(words):
                found.append(CommandLine(number, tuple(argv)))
            if words[:1] == ["make"] and len(words) == 2:
                for recipe_line in make_recipe(words[1]):
                    for argv in _invocations(shlex.split(recipe_line, comments=True)):
                        found.append(CommandLine(number, tuple(argv), via=text.split("#")[0].strip()))
    return found


def make_recipe(target: str) -> list[str]:
    """The Makefile's recipe lines for `target`, its variables filled in with their defaults."""
    makefile = README.parent / "Makefile"
    variables: dict[str, str] = {}
    recipe: list[str] = []
    current = None
    for line in makefile.read_text(encoding="utf-8").splitlines():
        if line.startswith("\t") and current == target:
            recipe.append(line.strip())
            continue
        current = None
        assignment = re.match(r"^([A-Z_]+)\s*[?:]?=\s*(.*)$", line)
        if assignment:
            variables[assignment[1]] = assignment[2].strip()
        rule = re.match(r"^([\w.$()/-]+):", line)
        if rule:
            current = rule[1]

    def fill(text: str) -> str:
        for _ in range(10):  # variables refer to variables; ten levels is far more than the Makefile has
            text = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), text)
        return text

    return [fill(line) for line in recipe]


COMMAND_LINES = command_lines()
COMMAND_IDS = [f"line{command.line}-{'-'.join(command.argv[:2])}" for command in COMMAND_LINES]


@dataclass(frozen=True)
class Resolved:
    command: click.Command
    parent: click.Context | None
    names: tuple[str, ...]  # the subcommand names, e.g. ("table", "show")
    words: list[str]  # the arguments of that command


def resolve(argv: tuple[str, ...]) -> Resolved:
    """The (sub)command `argv` names and its own arguments; an unknown command is click's UsageError."""
    command: click.Command = main
    parent: click.Context | None = None
    names: tuple[str, ...] = ()
    words = list(argv)
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        context = click.Context(command, info_name=" ".join(("compofa", *names)), parent=parent)
        sub = command.get_command(context, words[0])
        if sub is None:
            raise click.UsageError(f"no such command {words[0]!r} under {' '.join(('compofa', *names))!r}")
        parent, command, names, words = context, sub, (*names, words[0]), words[1:]
    return Resolved(command, parent, names, words)


def parse(argv: tuple[str, ...]) -> None:
    """Build the command's context from `argv` as click does before running it; raises click's errors."""
    resolved = resolve(argv)
    name = resolved.names[-1] if resolved.names else "compofa"
    try:
        resolved.command.make_context(name, resolved.words, parent=resolved.parent)
    except click.exceptions.Exit as stop:  # --help, --version
        assert stop.exit_code == 0
    except click.BadParameter as error:
        path_type = getattr(error.param, "type", None)
        if isinstance(path_type, click.Path) and path_type.exists and "does not exist" in error.message:
            return  # a file the user brings; its option and syntax were accepted
        raise


def test_readme_has_command_lines() -> None:
    assert len(COMMAND_LINES) >= 50, "README.md lost its command examples (or this test's reading of them)"


@pytest.mark.parametrize("command", COMMAND_LINES, ids=COMMAND_IDS)
def test_command_line_parses(command: CommandLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the files a line names do not exist here
    try:
        parse(command.argv)
    except click.UsageError as error:
        pytest.fail(f"{command.label} does not parse: {error.format_message()}")


def _option_values(argv: tuple[str, ...], option: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == option]


def why_not_run(argv: tuple[str, ...]) -> str | None:
    """Why a parsed line is not also run here, or None when it runs (in seconds, with nothing but compofa)."""
    path = resolve(argv).names
    if any(word.startswith(("ssh://", "adb://")) for word in argv):
        return "reaches another machine or a phone"
    if path in {(), ("spaces",), ("space", "show"), ("subnet", "sample"), ("subnet", "enumerate"),
                ("subnet", "show"), ("devices",)}:
        return None
    if path == ("export",):
        if "--checkpoint" in argv or "--result" in argv or any(word.startswith("@") for word in argv):
            return "reads a checkpoint, a search's results or a spec file the user brings"
        return None
    if path == ("search",):
        sources = _option_values(argv, "--latency")
        if not all(source == "lut:note10" or source == "flops" for source in sources):
            return "searches a profiled table or lookup table, or measures a device"
        if "evolution" in _option_values(argv, "--strategy"):
            return "runs an evolutionary search (up to 500 generations: seconds on a quiet machine)"
        return None
    reasons = {
        ("profile",): "measures subnets on a device for minutes",
        ("lut", "build"): "measures every layer on a device for minutes",
        ("lut", "validate"): "compares with a profiled table",
        ("table", "show"): "reads a profiled table",
        ("table", "export"): "reads a profiled table",
        ("table", "diff"): "reads two profiled tables",
        ("table", "merge"): "merges profiled tables",
        ("report",): "reads profiled tables",
        ("train",): "trains a supernet with PyTorch for minutes",
        ("eval",): "evaluates subnets with PyTorch for minutes",
        ("predictor", "train"): "reads a table of measured accuracies",
        ("digits",): "writes 1797 images (the Python snippets' digits come from the same write_digits)",
        ("agent",): "serves a host over its stdin and stdout",
    }
    return reasons.get(path, "not known to be quick")


@pytest.mark.parametrize("command", COMMAND_LINES, ids=COMMAND_IDS)
def test_command_line_runs(command: CommandLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = why_not_run(command.argv)
    if reason is not None:
        pytest.skip(f"parsed only: {command.label} {reason}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPOFA_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, list(command.argv))
    if result.exit_code != 0:
        pytest.fail(f"{command.label} failed (exit code {result.exit_code}): {result.output[-2000:]}"
                    f"{'' if result.exception is None else repr(result.exception)}")
