"""One vocabulary of options across every `compofa` command.

The commands are walked through click itself (every group, every subcommand,
every parameter), not by reading their source: an idea several commands share
(`compofa.cli.options.IDEAS`) has one spelling, help text, type and default
everywhere; every option says what it does; no command spells a shared idea
another way. Then what the shared ideas promise: old spellings still work and
say the new one, -o - writes standard output, a table's export format follows
the file's extension, `table show` prints the numbers its --json holds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
import fake_device  # noqa: F401  (registers the simulated backend "fake")
import pytest
from cli_helpers import assert_one_line_error, run

from compofa.cli import main
from compofa.cli.options import IDEAS, OUTPUT_FILE, OUTPUT_FOLDER, Idea, OldSpelling, SharedOption

SMALL = "compofa-r128-k33e33_k55e33_k33e33_k33e33_k55e33"

#: Spellings of shared ideas that no command may show (old ones are accepted hidden, with a note).
SYNONYMS = ("--batch-size", "--batchsize", "--bs", "--num-workers", "--out", "--output-file", "--outfile", "--gpu",
            "--cuda", "--int8-images", "--res", "--resolutions", "--input-size", "--image-size", "--random-seed",
            "--rng-seed", "--silent", "--no-progress", "--as-json", "--device-index", "--fmt", "--output-format",
            "--torch_device", "--min_rounds", "--max_rounds")

#: Flags several commands use that are not one shared idea, and why each command words its own.
OWN_MEANINGS = {
    "--table": "the table a command fills (profile, eval), memoizes into (search) or reads (lut validate, report, "
               "predictor train): each says which",
    "--target": "search's latency targets; export's choice of one searched target from --result",
    "--bucket": "search's fit rule, table show's grouping and the report's view width",
    "--generations": "search's evolution length (default 500 when evolving) and the report's per-target evolution",
    "--force": "profile adds a setup to a table; table merge keeps the first of differing setups",
    "--data": "train's dataset and eval's dataset, each with the folders it reads",
    "--epochs": "train cuts every phase of its schedule to this many; predictor train trains for this many",
    "--lut": "lut validate's one table to check; the report's estimators (repeatable, note10 by default)",
}

#: Commands still spelling shared ideas their own way, with why (each also xfails strictly below, so that the
#: day it is fixed the exemption must go).
PENDING: dict[str, str] = {}


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> dict[str, click.Command]:
    """Every leaf command by its path ("table show"), loaded through the lazy group as `compofa` loads it."""
    found: dict[str, click.Command] = {}
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found |= commands(command, path)
        else:
            found[" ".join(path)] = command
    return found


COMMANDS = commands()


def visible_options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def long_flag(option: click.Option) -> str:
    return max(option.opts, key=len)


def type_info(param_type: Any) -> dict[str, Any]:
    return click.types.convert_type(param_type).to_info_dict()


def default_of(option: click.Option) -> Any:
    """The option's default, None when it has none (click's own marker for that is private)."""
    return None if type(option.default).__name__ == "Sentinel" else option.default


IDEAS_BY_FLAG: dict[str, list[Idea]] = defaultdict(list)
for _idea in IDEAS:
    IDEAS_BY_FLAG[_idea.flag].append(_idea)


def test_the_walk_finds_every_command() -> None:
    """The walk reaches the subcommands of groups, and every command the top level lists."""
    assert {"profile", "search", "table show", "table export", "lut build", "subnet sample", "eval", "train",
            "export", "report"} <= set(COMMANDS)
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_option_says_what_it_does(path: str) -> None:
    missing = [long_flag(o) for o in visible_options(COMMANDS[path]) if not (o.help or "").strip()]
    assert not missing, f"{path}: no help text for {missing}"


def _disagreements(path: str) -> list[str]:
    """How the options of `path` that spell a shared idea's flag differ from the idea."""
    found = []
    for option in visible_options(COMMANDS[path]):
        flag = long_flag(option)
        ideas = IDEAS_BY_FLAG.get(flag)
        if not ideas:
            continue
        if not isinstance(option, SharedOption) or option.idea not in ideas:
            found.append(f"{flag} is written by hand, not from compofa.cli.options")
            continue
        idea = option.idea
        if tuple(option.opts) != tuple(o for o in idea.flags if o.startswith("-")):
            found.append(f"{flag} is spelled {option.opts}, not {idea.flags}")
        if option.help != idea.help:
            found.append(f"{flag} says {option.help!r}, not {idea.help!r}")
        if not idea.is_flag and type_info(option.type) != type_info(idea.type):
            found.append(f"{flag} is of type {option.type}, not {idea.type}")
        if not idea.per_command_default and default_of(option) != idea.default:
            found.append(f"{flag} defaults to {default_of(option)!r}, not {idea.default!r}")
        if option.name != idea.name:
            found.append(f"{flag} reaches the command as {option.name}, not {idea.name}")
    return found


@pytest.mark.parametrize("path", [
    pytest.param(path, marks=pytest.mark.xfail(strict=True, reason=PENDING[path])) if path in PENDING else path
    for path in sorted(COMMANDS)])
def test_shared_ideas_read_the_same_in_every_command(path: str) -> None:
    """One spelling, help text, type and default per idea (defaults that depend on the command are said in
    --help by each)."""
    assert not _disagreements(path), _disagreements(path)


def test_one_default_where_the_idea_has_one() -> None:
    """--seed, --round-seconds, --min-rounds, ... default the same everywhere (0, 0.4, 3, ...), read from the
    options themselves; subnet sample's --seed included."""
    defaults: dict[str, set[Any]] = defaultdict(set)
    for command in COMMANDS.values():
        for option in visible_options(command):
            if isinstance(option, SharedOption) and not option.idea.per_command_default:
                defaults[long_flag(option)].add(repr(default_of(option)))
    assert {flag: values for flag, values in defaults.items() if len(values) > 1} == {}
    assert defaults["--seed"] == {"0"} and defaults["--round-seconds"] == {"0.4"}
    assert defaults["--min-rounds"] == {"3"} and defaults["--max-rounds"] == {"8"}


def test_a_flag_several_commands_use_is_one_idea() -> None:
    """The same flag in two commands is the same shared idea, or is listed with why each words its own."""
    meanings: dict[str, set[str]] = defaultdict(set)
    users: dict[str, set[str]] = defaultdict(set)
    for path, command in COMMANDS.items():
        if path in PENDING:
            continue
        for option in visible_options(command):
            flag = long_flag(option)
            users[flag].add(path)
            if not isinstance(option, SharedOption):
                meanings[flag].add("written by hand")
            elif option.idea in (OUTPUT_FILE, OUTPUT_FOLDER):
                meanings[flag].add("output")  # one flag: the file or the folder a command writes
            else:
                meanings[flag].add(option.idea.name)
    several = {flag for flag, paths in users.items() if len(paths) > 1}
    assert {flag: meanings[flag] for flag in several if len(meanings[flag]) > 1} == {}
    own = sorted(flag for flag in several if meanings[flag] == {"written by hand"} and flag not in OWN_MEANINGS)
    assert own == [], "several commands spell these by hand: define them once in compofa.cli.options"
    assert {"--space", "--seed", "--batch", "--json", "--output"} <= several


def test_no_command_shows_a_synonym_of_a_shared_idea() -> None:
    shown = {(path, flag) for path, command in COMMANDS.items() for option in visible_options(command)
             for flag in option.opts + option.secondary_opts if flag in SYNONYMS}
    assert shown == set()


def test_the_timing_backend_and_the_torch_device_are_different_ideas() -> None:
    """--device is a timing backend wherever it shows; train and eval take --torch-device."""
    for path, command in COMMANDS.items():
        for option in visible_options(command):
            if long_flag(option) == "--device":
                assert option.idea.name == "device", path  # type: ignore[attr-defined]
    for path in ("train", "eval"):
        assert "--torch-device" in {long_flag(o) for o in visible_options(COMMANDS[path])}


def _required_arguments(command: click.Command) -> list[str]:
    """Placeholder values for what `command` requires, enough to parse it without running it."""
    values: list[str] = []
    for param in command.params:
        if param.required and isinstance(param, click.Option):
            values += [param.opts[0], "placeholder"]
        elif param.required:
            values.append("placeholder")
    return values


OLD_SPELLINGS = sorted((path, param.opts[0]) for path, command in COMMANDS.items() for param in command.params
                       if isinstance(param, OldSpelling))


def test_there_are_old_spellings_to_keep() -> None:
    assert ("train", "--batch-size") in OLD_SPELLINGS and ("eval", "--device") in OLD_SPELLINGS
    assert ("eval", "--int8-images") in OLD_SPELLINGS


@pytest.mark.parametrize(("path", "old"), OLD_SPELLINGS)
def test_an_old_spelling_still_works_and_names_the_new_one(path: str, old: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    command = COMMANDS[path]
    param = next(p for p in command.params if isinstance(p, OldSpelling) and p.opts[0] == old)
    value = "cuda" if param.type == click.STRING else "7"
    context = command.make_context(path, [*_required_arguments(command), old, value])
    expected: Any = (value,) if param.multiple else param.type_cast_value(context, value)
    flag = param.idea.flag
    assert context.params[param.idea.name] == expected
    assert capsys.readouterr().err.strip() == f"note: {old} is deprecated; use {flag}"
    for both in ((old, value, flag, value), (flag, value, old, value)):
        with pytest.raises(click.UsageError, match=f"{re.escape(old)} is the old spelling of {re.escape(flag)}"):
            command.make_context(path, [*_required_arguments(command), *both])
    listing = command.get_help(click.Context(command, info_name=path))
    assert re.search(rf"^\s+{re.escape(flag)}\b", listing, re.M) and not re.search(rf"^\s+{re.escape(old)}\s", listing,
                                                                                     re.M)  # --help shows the flag


def test_an_old_spelling_runs_the_command(tmp_path: Path) -> None:
    """`export --batch-size 2` exports a batch of 2, saying --batch on stderr."""
    import onnxruntime as ort

    result = run("export", SMALL, "--batch-size", "2", "-o", str(tmp_path / "b2.onnx"))
    assert result.exit_code == 0, result.output
    assert "note: --batch-size is deprecated; use --batch" in result.stderr
    session = ort.InferenceSession(str(tmp_path / "b2.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == 2


# -- what the shared ideas promise ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small table of four subnets timed on the simulated device."""
    path = tmp_path_factory.mktemp("vocabulary") / "t.db"
    result = run("profile", "--device", "fake", "-O", "noise=0.03", "--resolution", "160", "--limit", "4",
                 "--round-seconds", "0.01", "--min-rounds", "2", "--max-rounds", "3", "--table", str(path), "--quiet")
    assert result.exit_code == 0, result.output
    return path


def test_minus_writes_the_export_to_stdout_and_no_file(table: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    printed = run("table", "export", str(table), "-o", "-")
    assert printed.exit_code == 0, printed.output
    assert run("table", "export", str(table), "-o", "file.json").exit_code == 0
    assert json.loads(printed.stdout) == json.loads(Path("file.json").read_text())
    assert printed.stderr.strip() == "wrote 4 entries to standard output"
    as_csv = run("table", "export", str(table), "-o", "-", "--format", "csv")
    assert as_csv.stdout.splitlines()[0].startswith("space,spec,ofa,") and len(as_csv.stdout.splitlines()) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]  # no file named "-"


def test_minus_prints_search_results_and_exported_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ("search", "--latency", "flops", "--target", "25%,75%", "--resolution", "160")
    printed = run(*args, "-o", "-")
    assert printed.exit_code == 0, printed.output
    assert run(*args, "-o", "r.json").exit_code == 0
    chosen = [r["spec"] for r in json.loads(printed.stdout)["results"]]
    assert chosen == [r["spec"] for r in json.loads(Path("r.json").read_text())["results"]] and len(chosen) == 2
    as_csv = run(*args, "-o", "-", "--format", "csv").stdout.splitlines()
    assert as_csv[0].startswith("target_ms,target,spec,") and len(as_csv) == 3
    model = run("export", SMALL, "-o", "-")
    assert model.exit_code == 0 and "wrote ONNX to standard output" in model.stderr
    assert run("export", SMALL, "-o", "m.onnx").exit_code == 0
    assert model.stdout_bytes == Path("m.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "r.json"]


def test_the_export_format_follows_the_extension(table: Path, tmp_path: Path) -> None:
    assert run("table", "export", str(table), "-o", str(tmp_path / "x.csv")).exit_code == 0
    assert (tmp_path / "x.csv").read_text().startswith("space,spec,ofa,")
    assert run("table", "export", str(table), "-o", str(tmp_path / "x.JSON")).exit_code == 0
    assert len(json.loads((tmp_path / "x.JSON").read_text())) == 4
    refused = run("table", "export", str(table), "-o", str(tmp_path / "x.txt"))
    assert_one_line_error(refused, "cannot tell the format of", "name it .json or .csv, or give its format", "(change --format)")
    assert not (tmp_path / "x.txt").exists()
    assert run("table", "export", str(table), "-o", str(tmp_path / "x.txt"), "--format", "csv").exit_code == 0
    assert (tmp_path / "x.txt").read_text().startswith("space,spec,ofa,")  # --format wins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.JSON", "x.csv", "x.txt"]  # nothing half written


def test_table_show_prints_what_its_json_holds(table: Path) -> None:
    text = run("table", "show", str(table)).stdout
    (record,) = json.loads(run("table", "show", str(table), "--json").stdout)
    shown = re.search(r"median 95% CI half-width \+-([0-9.]+)%", text)
    assert shown is not None, text
    assert float(shown.group(1)) == pytest.approx(100 * record["median_ci_half_width_relative"], abs=0.005)
    assert record["median_relative_ci"] == pytest.approx(2 * record["median_ci_half_width_relative"])
    assert "4 entries" in text and f"(device {record['device_id']})" in text
    assert run("table", "show", str(table), "--device-id", str(record["device_id"]), "--json").stdout == \
        run("table", "show", str(table), "--json").stdout
    assert_one_line_error(run("table", "show", str(table), "--device-id", "9"), "no device 9")
    assert_one_line_error(run("table", "diff", str(table), str(table), "--device-id", "9"), "no device 9")


def test_a_single_entry_is_one_entry(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    result = run("profile", "--device", "fake", "--resolution", "160", "--limit", "1", "--round-seconds", "0.01",
                 "--min-rounds", "1", "--max-rounds", "2", "--table", str(path), "--quiet")
    assert result.exit_code == 0, result.output
    assert "profiled 1 subnet into" in result.stdout and "  1 entry," in result.stdout
    assert run("table", "export", str(path), "-o", str(tmp_path / "one.json")).stdout.strip() == \
        f"wrote 1 entry to {tmp_path / 'one.json'}"


def test_max_rounds_below_the_default_min_rounds_works_and_a_contradiction_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    quick = ("--device", "fake", "--resolution", "160", "--limit", "1", "--round-seconds", "0.01", "--quiet")
    assert run("profile", *quick, "--max-rounds", "2", "--table", str(path)).exit_code == 0
    refused = run("profile", *quick, "--min-rounds", "3", "--max-rounds", "2", "--table", str(tmp_path / "u.db"))
    assert_one_line_error(refused, "--min-rounds 3 is more than --max-rounds 2")
    assert not (tmp_path / "u.db").exists()
    folder = tmp_path / "lut"
    refused = run("lut", "build", "--min-rounds", "3", "--max-rounds", "2", "-o", str(folder))
    assert_one_line_error(refused, "--min-rounds 3 is more than --max-rounds 2")
    # --max-rounds 2 alone passes the rounds and reaches the device (refused here for other reasons)
    beyond = run("lut", "build", "--max-rounds", "2", "--device", "nope", "-o", str(folder))
    assert_one_line_error(beyond, "unknown device")
    assert not folder.exists()


def test_one_resolution_where_a_command_is_about_one_subnet(tmp_path: Path) -> None:
    assert_one_line_error(run("subnet", "show", SMALL, "--resolution", "160,192"),
                          "--resolution 160,192 names 2 resolutions; this command takes one")
    assert_one_line_error(run("export", SMALL, "--resolution", "160:224", "-o", str(tmp_path / "m.onnx")),
                          "names 17 resolutions")
    record = json.loads(run("subnet", "show", SMALL, "--resolution", "160", "--json").stdout)
    assert record["resolution"] == 160
    assert_one_line_error(run("subnet", "show", SMALL, "--resolution", "225"),
                          "space 'compofa' has no resolution 225: it takes 128..224 step 4")
    assert "SubnetSpec" not in run("subnet", "show", SMALL.replace("k33e33", "k77e33", 1)).stderr
    listed = run("subnet", "enumerate", "--resolution", "160:168").stdout.split()
    assert len(listed) == 3 * 243


def test_subnet_sample_is_seeded_by_default() -> None:
    """--seed defaults to 0 as everywhere: two plain samples agree, and equal --seed 0's."""
    first = run("subnet", "sample", "-n", "3").stdout
    assert first == run("subnet", "sample", "-n", "3").stdout
    assert first == run("subnet", "sample", "-n", "3", "--seed", "0").stdout
    assert first != run("subnet", "sample", "-n", "3", "--seed", "1").stdout


def test_an_unknown_space_is_refused_listing_the_spaces() -> None:
    refused = run("subnet", "sample", "--space", "nope")
    assert_one_line_error(refused, "'nope' is not one of", "'compofa'", "'ofa-mbv3'")


def test_import_compofa_exposes_only_its_version() -> None:
    code = "import compofa; print(json.dumps([n for n in vars(compofa) if not n.startswith('__')])); " \
           "print(json.dumps(compofa.__all__))"
    done = subprocess.run([sys.executable, "-c", f"import json; {code}"], capture_output=True, text=True,
                          check=True, timeout=60)
    names, exported = map(json.loads, done.stdout.splitlines())
    assert names == [] and exported == ["__version__"]


def _compofa(**environment: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "compofa"
    if not executable.exists():
        pytest.skip(f"the compofa entry point is not installed beside {sys.executable}")
    return subprocess.run([str(executable)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **environment})


def test_the_shell_completes_commands_and_choices() -> None:
    """click's completion through the installed entry point: the bash script, subcommands and --space names."""
    script = _compofa(_COMPOFA_COMPLETE="bash_source")
    assert script.returncode == 0 and "_compofa_completion" in script.stdout
    subcommands = _compofa(_COMPOFA_COMPLETE="bash_complete", COMP_WORDS="compofa ta", COMP_CWORD="1")
    assert "plain,table" in subcommands.stdout.splitlines()
    spaces = _compofa(_COMPOFA_COMPLETE="bash_complete", COMP_WORDS="compofa search --space compofa-",
                      COMP_CWORD="3")
    assert {"plain,compofa-ek", "plain,compofa-proxyless"} <= set(spaces.stdout.splitlines())
    devices = _compofa(_COMPOFA_COMPLETE="bash_complete", COMP_WORDS="compofa profile --device onnx", COMP_CWORD="3")
    assert "plain,onnxruntime" in devices.stdout.splitlines()
