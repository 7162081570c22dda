"""An agent on another machine, started through ``ssh`` and spoken to over its stdin and stdout.

``ssh://[user@]host[:port][/backend][?agent=COMMAND&retries=N]`` names a device: the
user's own ssh runs, so keys, agents, ``~/.ssh/config`` host aliases and jump
hosts work as for any ssh command (``$COMPOFA_SSH_COMMAND`` replaces ``ssh``,
as ``$GIT_SSH_COMMAND`` does for git, e.g. ``ssh -F my_config``). On the
device, ``compofa agent`` must be on the login's PATH, or ``agent=`` gives
the command (``agent=/opt/venv/bin/compofa``). Nothing is ever listened on;
the connection carries no secret of its own.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from compofa import __version__
from compofa.agent.protocol import PROTOCOL, ProtocolError, read_message, write_message
from compofa.errors import CompofaError

SCHEME = "ssh://"
#: Reconnection attempts after a lost session (``?retries=N``): with waits of 2, 4, 8, 16 and 32 s this rides out
#: a small board's reboot or a network blip, and gives up on a device gone for good in about a minute.
DEFAULT_RETRIES = 5
#: ssh's own exit status for a failed connection (unreachable host, refused key, unknown host key).
SSH_FAILED = 255
#: A shell's exit status for a command it cannot find.
NOT_FOUND = 127


class RemoteError(CompofaError):
    """A remote device that cannot be reached, has no agent, or runs another compofa."""


class ConnectionLost(RemoteError):
    """The session ended under the host (the network dropped, the device rebooted, the agent was killed):
    reconnecting may help, unlike a refusal."""


@dataclass(frozen=True)
class SshTarget:
    """Where a remote device is: the ssh destination, the backend there, the agent's command, how often to
    reconnect."""

    host: str
    user: str | None = None
    port: int | None = None
    backend: str | None = None
    agent: str = "compofa"
    retries: int = DEFAULT_RETRIES

    @classmethod
    def parse(cls, url: str) -> SshTarget:
        if not url.startswith(SCHEME):
            raise RemoteError(f"a remote device looks like ssh://[user@]host[:port]/backend, not {url!r}",
                              option="device")
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise RemoteError(f"{url!r} has a port that is not a number", option="device") from None
        if not parts.hostname:
            raise RemoteError(f"{url!r} names no host: ssh://[user@]host[:port]/backend", option="device")
        backend = parts.path.strip("/") or None
        if backend is not None and "/" in backend:
            raise RemoteError(f"{url!r}: a remote device names one backend after the host, e.g. /onnxruntime",
                              option="device")
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"agent", "retries"})
        if unknown:
            raise RemoteError(f"{url!r}: the settings after '?' are agent=COMMAND and retries=N, not "
                              f"{', '.join(unknown)}", option="device")
        agent = query.get("agent", ["compofa"])[-1]
        retries_text = query.get("retries", [str(DEFAULT_RETRIES)])[-1]
        if not retries_text.isdigit():
            raise RemoteError(f"{url!r}: retries= is how often to reconnect after losing the device, a number >= 0",
                              option="device")
        return cls(parts.hostname, unquote(parts.username) if parts.username else None, port, backend, agent,
                   int(retries_text))

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{SCHEME}{self.destination}{port}" + (f"/{self.backend}" if self.backend else "")

    def command(self) -> list[str]:
        """The host's command line that starts the agent on the device."""
        ssh = shlex.split(os.environ.get("COMPOFA_SSH_COMMAND") or "ssh")
        # BatchMode: a password prompt would hang a profile that runs unattended; keys or an agent log in
        options = ["-o", "BatchMode=yes",
                   # a link that dies without a word (a device switched off) is noticed within 45 s, not never
                   "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
                   *(["-p", str(self.port)] if self.port else [])]
        # ssh hands the device's shell one command line: `agent` is the user's own shell syntax there
        return [*ssh, *options, "--", self.destination, f"{self.agent} agent"]


class AgentConnection:
    """One running agent session: requests in order, one reply each."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.sent_bytes = 0  # file bytes sent to the device's model store, for progress and tests
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._externals: dict[tuple[str, int, int], list[str]] = {}
        # ssh's and the agent's complaints go to a file, not a pipe: nobody reads a pipe during a long session,
        # and a full one would stop the agent mid-run
        self._errors = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(target.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=self._errors)
        except FileNotFoundError:
            self._errors.close()
            raise RemoteError("ssh is not installed here (Debian: apt-get install openssh-client)") from None
        try:
            self.hello = self._hello()
        except BaseException:
            self.close()
            raise

    def request(self, op: str, payload: bytes = b"", **fields: Any) -> dict[str, Any]:
        """Send one request (with `payload`, a file); its reply's fields, or a `RemoteError` with the agent's line."""
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            write_message(self._process.stdin, {"op": op, **fields}, payload)
            message = read_message(self._process.stdout)
        except (BrokenPipeError, ProtocolError):
            message = None
        if message is None:
            raise self._failure()
        reply, _ = message
        if not reply.get("ok"):
            raise RemoteError(f"{self.target.destination}: {reply.get('error', 'the agent refused')}")
        return reply

    def send_model(self, path: Path) -> str:
        """Make the model at `path` (an ONNX file with its external weight files, or a self-contained `.tflite` or
        `.pte` file) available on the device; its path there.

        Files the device already holds (by sha256) are not sent again: the 243 subnets of a space share most of
        their weight files, and a resumed run shares all of them.
        """
        files = {path.name: path, **{location: path.parent / location for location in self._external_files(path)}}
        hashes = {relative: self._hash(file) for relative, file in files.items()}
        missing = set(self.request("have", hashes=sorted(set(hashes.values())))["missing"])
        for relative, value in hashes.items():
            if value in missing:
                data = files[relative].read_bytes()
                self.request("put", payload=data, hash=value)
                self.sent_bytes += len(data)
                missing.discard(value)
        return str(self.request("model", files=hashes, main=path.name)["path"])

    def _external_files(self, path: Path) -> list[str]:
        if path.suffix != ".onnx":  # LiteRT and ExecuTorch files hold their weights inside
            return []
        # asked again for every round of a profile: the graph is parsed once per version of the file
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._externals:
            self._externals[key] = _external_files(path)
        return self._externals[key]

    def _hash(self, file: Path) -> str:
        stat = file.stat()
        key = (str(file), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = hashlib.sha256(file.read_bytes()).hexdigest()
        return self._hashes[key]

    def _hello(self) -> dict[str, Any]:
        reply = self.request("hello", version=__version__, protocol=PROTOCOL)
        if reply.get("version") != __version__ or reply.get("protocol") != PROTOCOL:
            raise RemoteError(
                f"{self.target.destination} runs compofa {reply.get('version')} (protocol {reply.get('protocol')}) "
                f"and this is compofa {__version__} (protocol {PROTOCOL}): install the same version on both"
            )
        return reply

    def _failure(self) -> RemoteError:
        """Why the session ended, from ssh's exit status and last line on stderr."""
        try:
            status = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            status = self._process.wait()
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        said = lines[-1].strip() if lines else ""
        where = self.target.destination
        if status == SSH_FAILED:
            return ConnectionLost(f"cannot reach {where} over ssh: {said or 'the connection failed'}; check that "
                               f"`ssh {where} true` works (keys, host key, ~/.ssh/config)")
        if status == NOT_FOUND:
            return RemoteError(f"{where} has no `{self.target.agent}` on its PATH: pip install compofa there, "
                               f"or name the agent's command with ?agent=PATH in the device")
        return ConnectionLost(f"the agent on {where} stopped (exit {status})" + (f": {said}" if said else ""))

    def close(self) -> None:
        """End the session (``bye``, then the process); safe to call twice."""
        process = self._process
        if process.poll() is None:
            try:
                assert process.stdin is not None
                write_message(process.stdin, {"op": "bye"})
                process.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        self._errors.close()

    def __enter__(self) -> AgentConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _external_files(path: Path) -> list[str]:
    """The relative paths of the weight files an ONNX model keeps outside itself (ONNX external data)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    locations = []
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            locations.append(entries["location"])
    return list(dict.fromkeys(locations))
