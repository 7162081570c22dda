"""The `compofa` command line: every command, its JSON output, and bad input.

Bad input must give one line on stderr starting with "error:", exit code 2,
no traceback and no file left behind.
"""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import pytest
import torch

from cli_helpers import assert_one_line_error, run
from compofa import __version__
from compofa.cli import main
from compofa.space import get_space, list_spaces, parse_spec
from compofa.supernet import Supernet
from compofa.supernet.checkpoint import save_checkpoint
from compofa.supernet.fresh import fresh_supernet

SMALL = "compofa-r128-k33e33_k55e33_k33e33_k33e33_k55e33"




def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    context = click.Context(group)
    for name in group.list_commands(context):  # the lazy group loads each command here
        command = group.get_command(context, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found += all_commands(command, prefix + (name,))
        else:
            found.append(prefix + (name,))
    return found


def test_version() -> None:
    """`compofa --version` prints the package version."""
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("command", all_commands(main), ids=lambda c: " ".join(c) or "compofa")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    """Every command and group answers --help."""
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_spaces_lists_the_registry() -> None:
    """`compofa spaces` lists every registered space with its exact count when small."""
    text = run("spaces").output
    for space in list_spaces():
        assert space.name in text
    data = json.loads(run("spaces", "--json").output)
    assert {entry["name"]: entry["subnets"] for entry in data}["compofa"] == 243


def test_space_show() -> None:
    """`compofa space show` describes the coupling and the extremes."""
    text = run("space", "show", "compofa").output
    assert "243" in text and "d4->e6" in text and str(get_space("compofa").largest()) in text
    assert_one_line_error(run("space", "show", "nope"), "unknown design space 'nope'", "compofa")


def test_subnet_sample_is_seeded_and_in_space() -> None:
    """Sampling prints canonical specs of the space; a seed makes it reproducible."""
    first = run("subnet", "sample", "--space", "compofa-ek", "-n", "5", "--seed", "7").output.split()
    again = run("subnet", "sample", "--space", "compofa-ek", "-n", "5", "--seed", "7").output.split()
    assert first == again and len(first) == 5
    assert all(get_space("compofa-ek").contains(parse_spec(text)) for text in first)
    records = json.loads(run("subnet", "sample", "-n", "2", "--seed", "1", "--resolution", "192", "--json").output)
    assert [parse_spec(r["spec"]).resolution for r in records] == [192, 192]
    assert all(len(r["ofa"]["ks"]) == 20 and r["ofa"]["r"] == [192] for r in records)


def test_subnet_enumerate() -> None:
    """Enumeration prints all 243 CompOFA subnets per resolution; huge spaces are refused."""
    lines = run("subnet", "enumerate", "--resolution", "160,224").output.split()
    assert len(lines) == 2 * 243 and len(set(lines)) == 2 * 243
    assert_one_line_error(run("subnet", "enumerate", "--space", "ofa-mbv3"), "sample it instead")
    assert_one_line_error(run("subnet", "enumerate", "--resolution", "100"), "resolution 100")


def test_subnet_show_counts_match_pytorch() -> None:
    """`subnet show --json` parameter count equals the extracted PyTorch subnet's."""
    spec = get_space("compofa").largest(224)
    record = json.loads(run("subnet", "show", str(spec), "--json").output)
    subnet = Supernet("mobilenetv3", 1.2).subnet(spec)
    assert record["parameters"] == sum(p.numel() for p in subnet.parameters())
    assert record["ofa"] == spec.to_ofa_dict()
    text = run("subnet", "show", str(spec)).output
    assert "se" in text and "skip" in text


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("bogus", "cannot read spec 'bogus'"),
        ("compofa-r224-k77e33_k55e33_k33e33_k33e33_k55e33",
         "block 0 of stage 0 has kernel size 7 (kernel_sizes[0]); space 'compofa' allows 3 there"),
        ("compofa-r224-k33e44_k55e33_k33e33_k33e33_k55e33", "block 0 of stage 0 has expand ratio 4 (expand_ratios[0])"),
        ("compofa-r100-k33e33_k55e33_k33e33_k33e33_k55e33", "space 'compofa' has no resolution 100: it takes "
                                                            "128..224 step 4"),
        ('{"ks": [3]}', "missing key 'e'"),
        ("@/nonexistent/spec.json", "cannot read spec file"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, fragment: str) -> None:
    """Malformed specs and values outside the space: one line, exit 2."""
    assert_one_line_error(run("subnet", "show", spec), fragment)


def test_spec_of_another_space_is_refused() -> None:
    """A canonical spec must belong to --space when both are given."""
    assert_one_line_error(run("subnet", "show", SMALL, "--space", "ofa-mbv3"), "belongs to space 'compofa'")


def onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    return sess.run(None, {"input": x})[0]


def test_export_spec_forms(tmp_path: Path) -> None:
    """Canonical text, OFA JSON and @file.json give the same model; --resolution and --batch shape it."""
    spec = parse_spec(SMALL)
    ofa_json = json.dumps(spec.to_ofa_dict())
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(ofa_json)
    x = np.random.default_rng(0).standard_normal((1, 3, 128, 128)).astype(np.float32)
    outputs = []
    for index, form in enumerate((SMALL, ofa_json, f"@{spec_file}")):
        target = tmp_path / f"m{index}.onnx"
        result = run("export", form, "-o", str(target))
        assert result.exit_code == 0, result.output
        outputs.append(onnx_logits(target, x))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])

    target = tmp_path / "b2.onnx"
    assert run("export", SMALL, "--batch", "2", "--resolution", "160", "-o", str(target)).exit_code == 0
    shape = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    assert shape == [2, 3, 160, 160]


def test_export_carries_checkpoint_weights(tmp_path: Path) -> None:
    """The ONNX file computes what the checkpoint's subnet computes in PyTorch."""
    supernet = fresh_supernet("mobilenetv3", 1.0, seed=3)
    checkpoint = tmp_path / "w10.pt"
    save_checkpoint(supernet, checkpoint)
    target = tmp_path / "model.onnx"
    result = run("export", SMALL, "--checkpoint", str(checkpoint), "-o", str(target))
    assert result.exit_code == 0, result.output
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        expected = supernet(x, parse_spec(SMALL)).numpy()
    got = onnx_logits(target, x.numpy())
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_kernel_transform_defaults_by_family(tmp_path: Path) -> None:
    """ofa-* exports apply the checkpoint's 7->5->3 matrices by default, --no-kernel-transform does not."""
    torch.manual_seed(0)
    supernet = fresh_supernet("mobilenetv3", 1.2, kernel_transform=True, seed=4)
    with torch.no_grad():
        for name, tensor in supernet.state_dict().items():
            if name.endswith("_matrix"):
                tensor.add_(0.2 * torch.randn_like(tensor))
    # An OFA-format file: bare state_dict, no compofa metadata.
    checkpoint = tmp_path / "ofa.pth"
    torch.save({"state_dict": supernet.state_dict()}, checkpoint)
    spec = get_space("ofa-mbv3").sample(np.random.default_rng(2), resolutions=[128])
    x = torch.randn(1, 3, 128, 128)
    plain = Supernet("mobilenetv3", 1.2, kernel_transform=False).eval()
    plain.load_state_dict({k: v for k, v in supernet.state_dict().items() if not k.endswith("_matrix")})
    for flags, model in (((), supernet), (("--no-kernel-transform",), plain)):
        target = tmp_path / f"t{len(flags)}.onnx"
        assert run("export", str(spec), "--checkpoint", str(checkpoint), *flags, "-o", str(target)).exit_code == 0
        with torch.no_grad():
            expected = model(x, spec).numpy()
        got = onnx_logits(target, x.numpy())
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_export_bad_output_paths(tmp_path: Path) -> None:
    """A missing folder or a directory as output: one line, exit 2, nothing written."""
    assert_one_line_error(run("export", SMALL, "-o", str(tmp_path / "missing" / "m.onnx")), "does not exist")
    assert not (tmp_path / "missing").exists()
    result = run("export", SMALL, "-o", str(tmp_path))
    assert result.exit_code == 2 and "directory" in result.output


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write to read-only folders")
def test_export_read_only_folder(tmp_path: Path) -> None:
    """A read-only output folder is reported before any work."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert_one_line_error(run("export", SMALL, "-o", str(folder / "m.onnx")), "not writable")
    finally:
        folder.chmod(0o700)


def test_export_checkpoint_that_does_not_fit(tmp_path: Path) -> None:
    """A w1.0 checkpoint exported as w1.2: one line naming the right width; no output file."""
    checkpoint = tmp_path / "w10.pth"
    torch.save(Supernet("mobilenetv3", 1.0).state_dict(), checkpoint)
    target = tmp_path / "m.onnx"
    result = run("export", SMALL, "--checkpoint", str(checkpoint), "--width", "1.2", "-o", str(target))
    assert_one_line_error(result, "does not fit", "--width 1")
    assert not target.exists() and list(tmp_path.iterdir()) == [checkpoint]
    assert_one_line_error(run("export", SMALL, "--checkpoint", str(tmp_path / "none.pth"), "-o", str(target)),
                          "does not exist")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    assert_one_line_error(run("export", SMALL, "--checkpoint", str(garbage), "-o", str(target)), "cannot read")
    assert_one_line_error(run("export", SMALL, "--width", "1.5", "-o", str(target)), "width 1.5")


def test_export_unwritable_folder_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the OS reports as unwritable is refused up front (runs as root too, by faking the answer)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    assert_one_line_error(run("export", SMALL, "-o", str(tmp_path / "m.onnx")), "not writable")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "problem", "flag"), [
    (("search", "--space", "compofa", "--latency", "lut:note10", "--target", ""), "no latency targets", "--target"),
    (("search", "--space", "ofa-mbv3", "--latency", "lut:note10", "--target", "25", "--strategy", "exhaustive"),
     "too large to search exhaustively", "--strategy"),
    (("profile", "--shard", "3", "--table", "{tmp}/t.db"), "a shard must look like K/N", "--shard"),
])
def test_library_errors_get_the_flag_of_the_command_that_ran(tmp_path: Path, args: tuple[str, ...], problem: str,
                                                             flag: str) -> None:
    """Library errors state the problem and name the setting; the CLI adds the flag that changes it."""
    result = run(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert_one_line_error(result, problem, f"(change {flag})")
    assert list(tmp_path.iterdir()) == []


def test_an_error_names_no_flag_the_command_lacks() -> None:
    """The same setting names no flag where the command that ran has none for it."""
    from compofa.cli.common import _flag_hint

    @click.command()
    @click.option("--target")
    def command(target: str | None) -> None: ...

    context = click.Context(command)
    assert _flag_hint(context, ("target",)) == " (change --target)"
    assert _flag_hint(context, ("strategy",)) == ""
    assert _flag_hint(context, ()) == ""


def test_profile_fleet_names_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    table = tmp_path / "t.db"
    empty = tmp_path / "devices.txt"
    empty.write_text("# no device yet\n\n")
    cases = [
        (("--devices", str(empty)), ("names no device", "one per line", "(change --devices)")),
        (("--devices", str(tmp_path / "missing.txt")), ("cannot read the devices file",)),
        (("--device", "onnxruntime", "--device", "onnxruntime"), ("named twice",)),
        (("--device", "onnxruntime", "--device", "lut:note10"), ("one backend, not lut and onnxruntime",)),
    ]
    for args, fragments in cases:
        assert_one_line_error(run("profile", *args, "--table", str(table), "--limit", "1", "--quiet"), *fragments)
        assert not table.exists()


def test_resolutions_take_lists_ranges_and_all() -> None:
    from compofa.cli.common import parse_resolutions
    from compofa.errors import SpecError
    from compofa.space import get_space

    space = get_space("compofa")
    assert parse_resolutions("all", space) == tuple(range(160, 225, 4)) and len(parse_resolutions("all", space)) == 17
    assert parse_resolutions("160:224:16", space) == (160, 176, 192, 208, 224)
    assert parse_resolutions("160:168, 224,160", space) == (160, 164, 168, 224)
    for text, says in (("160:224:0", "must go up"), ("224:160", "must go up"), ("1:2:3:4", "too many parts"),
                       ("abc", "ranges (160:224:4) and all"), ("100:120", "has no resolution 100"),
                       (" , ", "is empty")):
        with pytest.raises(SpecError, match=re.escape(says)):
            parse_resolutions(text, space)
    refused = run("profile", "--resolution", "120:240:8", "--table", "never.db", "--quiet")
    assert_one_line_error(refused, "has no resolution 120")
    assert not Path("never.db").exists()


def test_all_resolutions_on_a_lookup_table_that_lacks_some_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    import shutil

    import compofa

    lut = tmp_path / "lut"
    lut.mkdir()
    for resolution in (160, 224):
        name = f"{resolution}_lookup_table.yaml"
        shutil.copy(Path(compofa.__file__).parent / "data" / "note10_lut" / name, lut / name)
    table = tmp_path / "t.db"
    refused = run("profile", "--device", f"lut:{lut}", "--resolution", "all", "--table", str(table), "--quiet")
    assert_one_line_error(refused, "has no table for resolution(s) 164, 168", "it has 160, 224",
                          "give --resolution from those")
    assert not table.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["lut"]
    fine = run("profile", "--device", f"lut:{lut}", "--resolution", "160,224", "--limit", "4", "--table", str(table),
               "--quiet")
    assert fine.exit_code == 0, fine.output


def test_a_time_budget_and_plain_progress_lines(tmp_path: Path) -> None:
    """Without a terminal, progress is plain lines (no bar redrawn into a log); a time budget ends the run
    with what it measured in the table, says so, and the same command continues."""
    import fake_device  # noqa: F401  (registers the simulated backend "fake")

    table = tmp_path / "t.db"
    args = ("profile", "--device", "fake", "-O", "sleep=1", "--resolution", "160", "--limit", "12",
            "--round-seconds", "0.02", "--table", str(table))
    first = run(*args, "--time-budget", "0.8s")
    assert first.exit_code == 0, first.output
    assert "time budget spent:" in first.stdout and "the same command continues" in first.stdout
    lines = first.stderr.strip().splitlines()
    assert lines and all(line.startswith("fake compofa: ") for line in lines) and "\r" not in first.stderr
    assert any("rounds" in line and "ETA" in line for line in lines)
    assert any(re.search(r", noise \d+\.\d%", line) for line in lines)  # the reference's spread in the round
    from compofa.tables.store import LatencyTable

    with LatencyTable.open(table) as store:
        measured = len(store.entries())
    assert 0 < measured < 12
    assert_one_line_error(run(*args, "--time-budget", "soon"), "takes a duration such as 90s", "--time-budget")
    second = run(*args, "--quiet")
    assert second.exit_code == 0 and "time budget" not in second.stdout
    with LatencyTable.open(table) as store:
        entries = store.entries()
    assert len(entries) == 12 and all(e.reason != "time budget" for e in entries)
