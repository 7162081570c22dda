"""A real OpenSSH server on 127.0.0.1 for tests, with throwaway keys: no mock of the transport.

`SshServer.start(folder)` writes a host key, a client key, an ``authorized_keys``
and an ``sshd_config`` into `folder`, starts ``sshd -D`` on a free loopback port
as the current user, and waits until it accepts a login. `ssh_config` is a
client configuration for it under the host alias ``compofa-test``, so a test
runs the user's own ``ssh`` with ``-F CONFIG`` exactly as compofa's users do:
key-only, the known host pinned, no agent, nothing read from ``~/.ssh``.

The client runs in a clean environment (`environment()`): this machine's login
shell start-up is slow and its ``~/.ssh`` is not the test's. The key exchange
is curve25519, the cheapest OpenSSH offers, because every connection pays it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
SSH = shutil.which("ssh")
HOST_ALIAS = "compofa-test"
#: The device side's agent: this checkout's compofa (the test login's PATH has none).
AGENT = shlex.join([sys.executable, "-m", "compofa"])


def device(agent: str = AGENT, backend: str = "") -> str:
    """The device name of `backend` on the test server, its agent started with `agent`."""
    return f"ssh://{HOST_ALIAS}{'/' + backend if backend else ''}?agent={quote(agent)}"
#: Why SSH tests cannot run here, or None if they can.
MISSING = (
    "needs OpenSSH's sshd (Debian: apt-get install openssh-server)" if SSHD is None
    else "needs the OpenSSH client (ssh)" if SSH is None or shutil.which("ssh-keygen") is None
    else None
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "compofa-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


@dataclass
class SshServer:
    """One running sshd and the client files that reach it."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    ssh_config: Path
    user: str

    @classmethod
    def start(cls, folder: Path, timeout: float = 10.0) -> SshServer:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # sshd and ssh refuse keys in a folder others can write
        _keygen(folder / "host_key")
        _keygen(folder / "client_key")
        shutil.copyfile(folder / "client_key.pub", folder / "authorized_keys")
        os.chmod(folder / "authorized_keys", 0o600)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd run by root insists on its privilege folder
        port = _free_port()
        user = os.environ.get("USER") or os.popen("id -un").read().strip()
        (folder / "sshd_config").write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {folder / "host_key"}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {folder / "authorized_keys"}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowUsers {user}
KexAlgorithms curve25519-sha256
LogLevel ERROR
""")
        key_type, key = (folder / "host_key.pub").read_text().split()[:2]
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {key_type} {key}\n")
        ssh_config = folder / "ssh_config"
        ssh_config.write_text(f"""\
Host {HOST_ALIAS}
    HostName 127.0.0.1
    Port {port}
    User {user}
    IdentityFile {folder / "client_key"}
    IdentitiesOnly yes
    IdentityAgent none
    UserKnownHostsFile {folder / "known_hosts"}
    StrictHostKeyChecking yes
    BatchMode yes
    KexAlgorithms curve25519-sha256
    ConnectTimeout 5
""")
        assert SSHD is not None, MISSING
        with open(folder / "sshd.log", "wb") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        server = cls(folder, port, process, ssh_config, user)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited with {process.returncode}: {(folder / 'sshd.log').read_text()}")
            if server.run("true", check=False, timeout=timeout).returncode == 0:
                return server
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"sshd on port {port} accepted no login: {(folder / 'sshd.log').read_text()}")
            time.sleep(0.1)

    def environment(self) -> dict[str, str]:
        """A clean client environment: no agent, no inherited ssh settings."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.folder), "LANG": "C.UTF-8"}

    def ssh_command(self, *remote: str) -> list[str]:
        """The client command line that runs `remote` on the server."""
        assert SSH is not None, MISSING
        return [SSH, "-F", str(self.ssh_config), HOST_ALIAS, *remote]

    def run(self, *remote: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.ssh_command(*remote), env=self.environment(), capture_output=True, text=True,
                              check=check, timeout=timeout, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        """Stop sshd (and with it every session it serves); safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
