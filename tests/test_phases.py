"""Training phases as data: the paper's schedules, config files, and the configs refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from compofa.supernet.train import PRESETS, Phase, PhaseConfigError, preset, read_phases


def test_presets_are_the_paper_s_schedules() -> None:
    """Table 1 and Table 3: 330 epochs for CompOFA, 605 for OFA, 455 for CompOFA with elastic kernel."""
    assert {name: sum(p.epochs for p in phases) for name, phases in PRESETS.items()} == {
        "compofa": 330, "ofa": 605, "compofa-ek": 455}
    teacher, short, long = preset("compofa")
    assert (teacher.kernel_sizes, teacher.depths, teacher.expand_ratios, teacher.distill) == ((7,), (4,), (6,), 0.0)
    # section 5.1: 0.06 at batch 1536 for 25 epochs, then 0.18 with 5 warm-up epochs; N = 4
    assert short.lr(1536) == pytest.approx(0.06) and long.lr(1536) == pytest.approx(0.18)
    assert (short.epochs, long.epochs, long.warmup_epochs, long.subnets_per_step) == (25, 125, 5, 4)
    width_1 = next(p for p in preset("ofa") if p.name == "elastic-width-1")
    assert width_1.sort_channels and width_1.expand_ratios == (4, 6) and width_1.subnets_per_step == 4
    assert [p.name for p in preset("ofa") if p.sort_channels] == ["elastic-width-1"]


@pytest.mark.parametrize("phase", [p for phases in PRESETS.values() for p in phases], ids=lambda p: p.name)
def test_a_phase_survives_its_file_form(phase: Phase, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(phase.to_dict()))
    (tmp_path / "p.json").write_text(json.dumps([phase.to_dict(), phase.to_dict()]))
    assert read_phases(tmp_path / "p.yaml") == (phase,)
    assert read_phases(tmp_path / "p.json") == (phase, phase)


def test_bad_phase_configs_say_what_is_wrong(tmp_path: Path) -> None:
    base = {"name": "mine", "kind": "compound", "space": "compofa", "epochs": 3, "lr_per_256": 0.01}
    cases = [
        ({**base, "epoch": 3}, "unknown key(s) 'epoch'; a phase takes name, kind"),
        ({k: v for k, v in base.items() if k != "epochs"}, "missing key(s) epochs"),
        ({**base, "kind": "shrink"}, "kind must be one of teacher, compound, progressive"),
        ({**base, "space": "nope"}, "unknown design space 'nope'"),
        ({**base, "epochs": 0}, "epochs must be a positive integer"),
        ({**base, "warmup_epochs": 3}, "warmup_epochs (3) must be fewer than epochs (3)"),
        ({**base, "depths": [5]}, "depths [5] must be a non-empty subset of compofa's [2, 3, 4]"),
        ({**base, "kernel_sizes": [7]}, "kernel_sizes [7] must be a non-empty subset"),
        ({**base, "resolutions": [100]}, "resolution 100"),
        ({**base, "kind": "teacher"}, "set distill: 0"),
        ({**base, "lr_per_256": "fast"}, "lr_per_256 must be a number"),
    ]
    for data, fragment in cases:
        (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(PhaseConfigError) as caught:
            read_phases(tmp_path / "p.yaml")
        assert fragment in str(caught.value), (data, str(caught.value))
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(PhaseConfigError, match="is not valid YAML"):
        read_phases(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 3\n")
    with pytest.raises(PhaseConfigError, match="phase 1: expected a mapping"):
        read_phases(tmp_path / "list.yaml")
    with pytest.raises(PhaseConfigError, match="cannot read phase config"):
        read_phases(tmp_path / "missing.yaml")
    with pytest.raises(PhaseConfigError, match="unknown schedule 'bogus'; presets: compofa"):
        preset("bogus")
