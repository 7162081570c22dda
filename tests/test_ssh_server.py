"""The SSH test server itself: a real sshd on 127.0.0.1 that the user's own ssh reaches with a key, and only so.

Later tests (remote devices, fleets) run compofa's agent through it; these check the ground they stand on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshd import MISSING, SshServer

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    running = SshServer.start(tmp_path_factory.mktemp("sshd"))
    yield running
    running.stop()


def test_a_command_runs_on_the_server_with_its_output_and_exit_status(server: SshServer) -> None:
    done = server.run("echo", "hello;", "exit", "3", check=False)
    assert done.stdout == "hello\n" and done.returncode == 3


def test_a_byte_stream_goes_both_ways(server: SshServer) -> None:
    """What an agent needs: stdin and stdout of one long-lived remote process, binary-safe."""
    payload = bytes(range(256)) * 1000
    done = subprocess.run(server.ssh_command("cat"), input=payload, capture_output=True, env=server.environment(),
                          timeout=30)
    assert done.returncode == 0 and done.stdout == payload


def test_only_the_key_gets_in(server: SshServer, tmp_path: Path) -> None:
    """Another key is refused (no password fallback), and so is a host that is not the pinned one."""
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = server.ssh_config.read_text().replace(str(server.folder / "client_key"), str(other))
    (tmp_path / "ssh_config").write_text(config)
    refused = subprocess.run(["ssh", "-F", str(tmp_path / "ssh_config"), "compofa-test", "true"],
                             capture_output=True, text=True, env=server.environment(), timeout=30)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
