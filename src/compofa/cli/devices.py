"""`compofa devices`: the backends and whether they can run here."""

from __future__ import annotations

import click

from compofa.cli.common import echo_rows, print_json


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def devices_command(as_json: bool) -> None:
    """List the device backends, whether each is available here, and why not."""
    from compofa.devices import list_backends

    rows = []
    for backend in list_backends():
        status = backend.availability()
        rows.append({"name": backend.name, "available": status.ok, "reason": status.reason,
                     "summary": backend.summary, "default_batch": backend.default_batch})
    if as_json:
        print_json(rows)
        return
    echo_rows(
        [(str(r["name"]), "yes" if r["available"] else "no", str(r["summary"] if r["available"] else r["reason"]))
         for r in rows],
        ("device", "available", "notes"),
    )
