"""Checkpoints: our own format round-trips, OFA files load, and every failure is a one-line CheckpointError."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from compofa.errors import CheckpointError
from compofa.supernet import Supernet
from compofa.supernet.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_state,
    load_supernet,
    save_checkpoint,
    unwrap_checkpoint,
)
from conftest import PARITY_RESOLUTION, build_reference, images, sample_specs


def _one_line_error(call: Callable[[], Any], *fragments: str) -> str:
    """Run `call`, expecting a CheckpointError whose one-line message holds every fragment."""
    with pytest.raises(CheckpointError) as caught:
        call()
    message = str(caught.value)
    assert message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _same_state(a: Supernet, b: Supernet) -> bool:
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


@pytest.fixture(scope="module")
def ofa_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """State dicts of the reference code saved as plain OFA files (default init; only names and shapes matter)."""
    folder = tmp_path_factory.mktemp("ofa")
    files = {}
    for name, (family, width, transform) in {
        "mbv3-w1.0": ("mobilenetv3", 1.0, True),
        "mbv3-w1.2-no-matrices": ("mobilenetv3", 1.2, False),
    }.items():
        files[name] = folder / f"{name}.pth"
        torch.save(build_reference(family, width, transform).state_dict(), files[name])
    return files


# -- our format ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "width", "transform", "space"),
    [("mobilenetv3", 1.2, True, "ofa-mbv3"), ("proxylessnas", 1.3, False, "compofa-proxyless")],
)
def test_round_trip_restores_settings_and_outputs(
    family: str,
    width: float,
    transform: bool,
    space: str,
    random_supernet: Callable[..., Supernet],
    tmp_path: Path,
) -> None:
    """save_checkpoint then load_supernet restores family, width, transform, every tensor and the outputs."""
    supernet = random_supernet(family, width, transform)
    path = tmp_path / "supernet.pt"
    save_checkpoint(supernet, path, extra={"epoch": 7})
    assert sorted(os.listdir(tmp_path)) == ["supernet.pt"]

    raw = torch.load(path, weights_only=True)
    assert (raw["format"], raw["version"], raw["epoch"]) == (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, 7)
    # The settings come from the file, not from the (different) arguments.
    loaded = load_supernet(path, family, kernel_transform=not transform).eval()
    assert loaded.family is supernet.family
    assert (loaded.width, loaded.kernel_transform) == (width, transform)
    assert _same_state(loaded, supernet)
    x = images(2, PARITY_RESOLUTION)
    with torch.no_grad():
        for spec in sample_specs(space, 2, seed=20):
            assert torch.equal(loaded(x, spec), supernet(x, spec))


def test_round_trip_with_matching_explicit_width(random_supernet: Callable[..., Supernet], tmp_path: Path) -> None:
    """Giving the width the file already has is accepted."""
    supernet = random_supernet("mobilenetv3", 1.2, False)
    save_checkpoint(supernet, tmp_path / "s.pt")
    assert load_supernet(tmp_path / "s.pt", "mobilenetv3", width=1.2).width == 1.2


# -- OFA files -----------------------------------------------------------------------------


def test_width_is_inferred_from_the_stem(ofa_files: dict[str, Path], tmp_path: Path) -> None:
    """An OFA file without metadata gets the width whose stem matches, not the family default."""
    supernet = load_supernet(ofa_files["mbv3-w1.0"], "mobilenetv3", kernel_transform=True)
    assert supernet.width == 1.0 and supernet.kernel_transform
    assert supernet.first_conv.conv.weight.shape[0] == 16

    proxyless = Supernet("proxylessnas", 1.0, kernel_transform=False)
    path = tmp_path / "proxyless-w1.0.pth"
    torch.save(proxyless.state_dict(), path)
    loaded = load_supernet(path, "proxylessnas")
    assert loaded.width == 1.0 and loaded.family.default_width == 1.3
    assert _same_state(loaded, proxyless)


# -- errors ----------------------------------------------------------------------------------


def test_wrong_width_suggests_the_right_one(ofa_files: dict[str, Path]) -> None:
    """A w1.0 file loaded at w1.2 is a one-line error that says to pass --width 1."""
    message = _one_line_error(
        lambda: load_supernet(ofa_files["mbv3-w1.0"], "mobilenetv3", width=1.2, kernel_transform=True),
        "shape mismatches",
        "--width 1",
    )
    assert "[16] vs supernet [24]" in message
    state, _ = unwrap_checkpoint(torch.load(ofa_files["mbv3-w1.0"], weights_only=True))
    _one_line_error(lambda: load_state(Supernet("mobilenetv3", 1.2, True), state), "--width 1")


def test_missing_matrices_suggest_no_kernel_transform(ofa_files: dict[str, Path]) -> None:
    """A file trained without the transform, loaded with it, says to use --no-kernel-transform."""
    message = _one_line_error(
        lambda: load_supernet(ofa_files["mbv3-w1.2-no-matrices"], "mobilenetv3", kernel_transform=True),
        "missing keys",
        "7to5_matrix",
        "--no-kernel-transform",
    )
    assert "--width" not in message
    assert load_supernet(ofa_files["mbv3-w1.2-no-matrices"], "mobilenetv3").width == 1.2


def test_unknown_keys_are_listed() -> None:
    """Keys the supernet does not have are named (the first few, then a count)."""
    supernet = Supernet("mobilenetv3", 1.0)
    state = dict(supernet.state_dict())
    state["blocks.3.conv.bogus.weight"] = torch.zeros(1)
    _one_line_error(lambda: load_state(supernet, state), "1 unknown keys", "blocks.3.conv.bogus.weight")
    for index in range(6):
        state[f"extra.{index}"] = torch.zeros(1)
    _one_line_error(lambda: load_state(Supernet("mobilenetv3", 1.0), state), "7 unknown keys", "... 3 more")


def test_failed_load_leaves_the_supernet_unchanged() -> None:
    """A checkpoint that does not fit copies nothing."""
    supernet = Supernet("mobilenetv3", 1.0)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    state = {k: torch.ones_like(v) for k, v in supernet.state_dict().items()}
    state["unexpected"] = torch.zeros(1)
    with pytest.raises(CheckpointError):
        load_state(supernet, state)
    assert all(torch.equal(v, before[k]) for k, v in supernet.state_dict().items())


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "not-a-state-dict"])
def test_unreadable_file_is_a_checkpoint_error(kind: str, tmp_path: Path) -> None:
    """Corrupt, truncated, empty or tensor-less files are one-line CheckpointErrors naming the file."""
    path = tmp_path / f"{kind}.pth"
    if kind == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 20)
    elif kind == "truncated":
        torch.save(Supernet("mobilenetv3", 1.0).state_dict(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"epoch": 3, "lr": 0.1}, path)
    message = _one_line_error(lambda: load_supernet(path, "mobilenetv3"))
    assert str(path) in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing path and a directory each get their own one-line message."""
    _one_line_error(lambda: load_supernet(tmp_path / "nope.pth", "mobilenetv3"), "does not exist", "nope.pth")
    _one_line_error(lambda: load_supernet(tmp_path, "mobilenetv3"), "directory")


def test_checkpoint_of_another_family(random_supernet: Callable[..., Supernet], tmp_path: Path) -> None:
    """Our ProxylessNAS checkpoint loaded as MobileNetV3 names the family it holds."""
    save_checkpoint(random_supernet("proxylessnas", 1.3, False), tmp_path / "proxyless.pt")
    _one_line_error(lambda: load_supernet(tmp_path / "proxyless.pt", "mobilenetv3"), "proxylessnas", "mobilenetv3")


def test_checkpoint_trained_on_a_smaller_space(random_supernet: Callable[..., Supernet], tmp_path: Path) -> None:
    """Weights trained on CompOFA's subnets load for CompOFA (and its subsets), not for all of OFA's subnets."""
    supernet = random_supernet("mobilenetv3", 1.0, False)
    for space in ("compofa", "ofa-mbv3", "nonesuch"):
        save_checkpoint(supernet, tmp_path / f"{space}.pt", {"training": {"phase": {"space": space}}})
    assert _same_state(load_supernet(tmp_path / "compofa.pt", "mobilenetv3", space="compofa"), supernet)
    load_supernet(tmp_path / "ofa-mbv3.pt", "mobilenetv3", space="compofa")  # CompOFA's subnets are OFA's too
    _one_line_error(lambda: load_supernet(tmp_path / "compofa.pt", "mobilenetv3", space="ofa-mbv3"),
                    "trained on space 'compofa'", "kernel size 5 in stage 0 of space 'ofa-mbv3'", "--space compofa")
    _one_line_error(lambda: load_supernet(tmp_path / "nonesuch.pt", "mobilenetv3", space="compofa"),
                    "'nonesuch', which this compofa does not know")
    load_supernet(tmp_path / "compofa.pt", "mobilenetv3")  # no space asked: nothing to check


def test_conflicting_width_and_unknown_version(random_supernet: Callable[..., Supernet], tmp_path: Path) -> None:
    """Our checkpoint at another width than asked, or of a newer format version, is refused."""
    supernet = random_supernet("mobilenetv3", 1.2, False)
    save_checkpoint(supernet, tmp_path / "s.pt")
    _one_line_error(lambda: load_supernet(tmp_path / "s.pt", "mobilenetv3", width=1.0), "1.2")
    content = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION + 1, "state_dict": {}}
    _one_line_error(lambda: unwrap_checkpoint(content), "version", "upgrade")


# -- atomic saving -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [OSError("No space left on device"), KeyboardInterrupt()], ids=["oserror", "interrupt"]
)
def test_interrupted_save_keeps_the_previous_checkpoint(
    error: BaseException, random_supernet: Callable[..., Supernet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A save that dies mid-write leaves the old file intact and no temporary file behind."""
    old = random_supernet("proxylessnas", 1.3, False)
    path = tmp_path / "supernet.pt"
    save_checkpoint(old, path)
    old_bytes = path.read_bytes()
    real_save = torch.save

    def dying_save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        real_save({"partial": torch.zeros(1000)}, handle)  # some bytes reach the file first
        raise error

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(type(error)):
        save_checkpoint(random_supernet("proxylessnas", 1.3, True), path)
    with pytest.raises(type(error)):
        save_checkpoint(old, tmp_path / "new.pt")
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ["supernet.pt"]
    assert path.read_bytes() == old_bytes
    restored = load_supernet(path, "proxylessnas")
    assert not restored.kernel_transform and _same_state(restored, old)
