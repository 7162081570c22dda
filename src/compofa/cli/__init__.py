"""The `compofa` command: a thin layer over the Python API.

Every command parses its arguments, calls one library function and prints the
result; errors from the library become one line on stderr and exit code 2.
"""

from __future__ import annotations

import click

from compofa import __version__
from compofa.cli.common import CompofaGroup
from compofa.cli.devices import devices_command
from compofa.cli.export import export_command
from compofa.cli.lut import lut_group
from compofa.cli.predictor import predictor_group
from compofa.cli.profile import profile_command
from compofa.cli.report import report_command
from compofa.cli.search import search_command
from compofa.cli.spaces import space_group, spaces_command
from compofa.cli.subnet import subnet_group
from compofa.cli.table import table_group
from compofa.cli.train import digits_command, eval_command, train_command


@click.group(cls=CompofaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="compofa")
def main() -> None:
    """Profile every subnet of a CompOFA supernet on a device, keep the
    measurements as latency tables, search them for the best subnet per
    latency target, report on them, and train the supernet itself."""


main.add_command(spaces_command)
main.add_command(space_group)
main.add_command(subnet_group)
main.add_command(export_command)
main.add_command(devices_command)
main.add_command(profile_command)
main.add_command(table_group)
main.add_command(search_command)
main.add_command(lut_group)
main.add_command(report_command)
main.add_command(train_command)
main.add_command(eval_command)
main.add_command(predictor_group)
main.add_command(digits_command)

__all__ = ["main"]
