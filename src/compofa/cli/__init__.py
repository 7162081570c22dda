"""The `compofa` command: a thin layer over the Python API.

Every command parses its arguments, calls one library function and prints the
result; errors from the library become one line on stderr and exit code 2.

Subcommands are registered by name, module and short help, and imported only
when run: `compofa --help`, `compofa spaces` or `compofa table show` never
import what `compofa train` needs (torch), and each command module imports its
heavy libraries inside the command itself.
"""

from __future__ import annotations

import click

from compofa import __version__
from compofa.cli.common import LazyCommand, LazyGroup

#: Every subcommand: where it lives, and the short help `compofa --help` lists for it
#: (the first sentence of its docstring; tests/test_startup.py keeps the two equal).
COMMANDS: dict[str, LazyCommand] = {
    "spaces": LazyCommand("compofa.cli.spaces:spaces_command",
                          "List the design spaces and how many subnets each has (per resolution)."),
    "space": LazyCommand("compofa.cli.spaces:space_group", "Inspect one design space."),
    "subnet": LazyCommand("compofa.cli.subnet:subnet_group", "Sample, enumerate and describe subnets."),
    "export": LazyCommand("compofa.cli.export:export_command",
                          'Export subnet SPEC as ONNX (input "input" NCHW float32, output "logits") or PyTorch.'),
    "devices": LazyCommand("compofa.cli.devices:devices_command",
                           "List the device backends, whether each is available here (or on ssh://HOST), and why "
                           "not."),
    "agent": LazyCommand("compofa.cli.devices:agent_command",
                         "Serve this machine's device backends to a compofa host over stdin and stdout."),
    "profile": LazyCommand("compofa.cli.profile:profile_command",
                           "Measure every subnet of SPACE on DEVICE into TABLE; rerunning resumes."),
    "table": LazyCommand("compofa.cli.table:table_group", "Inspect, export, compare and merge latency tables."),
    "search": LazyCommand("compofa.cli.search:search_command",
                          "Find the most accurate subnet of SPACE under each latency target."),
    "lut": LazyCommand("compofa.cli.lut:lut_group", "Layer lookup tables (OFA's {R}_lookup_table.yaml format)."),
    "report": LazyCommand("compofa.cli.report:report_command",
                          "Pareto fronts, the paper's design-space views, cross-device rank agreement and noise, "
                          "as OUTPUT/index.html."),
    "train": LazyCommand("compofa.cli.train:train_command",
                         "Train the supernet phase by phase; rerunning resumes after the last finished epoch."),
    "eval": LazyCommand("compofa.cli.train:eval_command",
                        "Recalibrate BatchNorm and measure top-1/top-5 of every subnet (or a sample) into TABLE."),
    "predictor": LazyCommand("compofa.cli.predictor:predictor_group", "Accuracy predictors (OFA's 3 x 400 network)."),
    "digits": LazyCommand("compofa.cli.train:digits_command",
                          "Write scikit-learn's handwritten digits (1797 real scans, no download) as an ImageFolder "
                          "dataset."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="compofa")
def main() -> None:
    """Profile every subnet of a CompOFA supernet on a device, keep the
    measurements as latency tables, search them for the best subnet per
    latency target, report on them, and train the supernet itself."""


__all__ = ["COMMANDS", "main"]
