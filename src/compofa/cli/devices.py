"""`compofa devices`: the backends and whether they can run here or on a remote machine; `compofa agent`."""

from __future__ import annotations

import sys
from typing import Any

import click

from compofa.cli.common import echo_rows, print_json
from compofa.cli.options import JSON, option


@click.command("devices")
@click.argument("remote", required=False, metavar="[ssh://[USER@]HOST[:PORT]]")
@option(JSON)
def devices_command(remote: str | None, as_json: bool) -> None:
    """List the device backends, whether each is available here (or on ssh://HOST), and why not.

    With ssh://HOST the list comes from the `compofa agent` there (started
    through your ssh: keys, ~/.ssh/config and jump hosts work), with what
    identifies that machine.
    """
    fingerprint: dict[str, Any] | None = None
    if remote is None:
        from compofa.devices import list_backends

        rows = []
        for backend in list_backends():
            status = backend.availability()
            rows.append({"name": backend.name, "available": status.ok, "reason": status.reason,
                         "summary": backend.summary, "default_batch": backend.default_batch})
    else:
        from compofa.remote.ssh import AgentConnection, SshTarget

        with AgentConnection(SshTarget.parse(remote)) as agent:
            reply = agent.request("backends")
        rows, fingerprint = reply["backends"], {**reply["fingerprint"], **reply["details"]}
    if as_json:
        print_json(rows if fingerprint is None else {"machine": fingerprint, "backends": rows})
        return
    if fingerprint is not None:
        click.echo(f"{remote}: " + ", ".join(f"{key} {value}" for key, value in fingerprint.items()))
    echo_rows(
        [(str(r["name"]), "yes" if r["available"] else "no", str(r["summary"] if r["available"] else r["reason"]))
         for r in rows],
        ("device", "available", "notes"),
    )


@click.command("agent")
def agent_command() -> None:
    """Serve this machine's device backends to a compofa host over stdin and stdout.

    A host starts it through ssh (`compofa devices ssh://HOST` and the like);
    it opens no port and writes nothing but replies to stdout.
    """
    from compofa.agent.serve import main

    sys.exit(main())
