"""Remote devices through a real OpenSSH server on 127.0.0.1 (tests/sshd.py): the agent, its refusals.

The host runs the user's own ssh (here with the server's client config, through `COMPOFA_SSH_COMMAND`), and the
device runs this checkout's `compofa agent` (named with `?agent=`, since the test login's PATH has no compofa).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import assert_one_line_error, run
from compofa import __version__
from compofa.remote.ssh import RemoteError, SshTarget
from sshd import AGENT, HOST_ALIAS, MISSING, SshServer, device

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def test_devices_lists_the_remote_backends_and_machine(ssh: SshServer) -> None:
    listed = run("devices", device(), "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    names = {row["name"]: row for row in data["backends"]}
    assert names["onnxruntime"]["available"] and set(names) >= {"onnxruntime", "torch", "cuda", "tensorrt", "lut"}
    assert data["machine"]["cpu"] and data["machine"]["cpu_count"] >= 1
    table = run("devices", device())
    assert table.exit_code == 0 and table.stdout.startswith(f"{device()}: cpu ") and "onnxruntime  yes" in table.stdout


def test_another_compofa_version_is_refused(ssh: SshServer) -> None:
    """The agent here is this checkout's code announcing another version: the host refuses it by name."""
    older = shlex.join([sys.executable, "-c", "import sys, compofa; compofa.__version__ = '0.0.1'; "
                                              "from compofa.agent.serve import main; sys.exit(main())"])
    refused = run("devices", device(older))
    assert_one_line_error(refused, "runs compofa 0.0.1", f"this is compofa {__version__}", "same version on both")


def test_a_device_without_the_agent_is_named(ssh: SshServer) -> None:
    refused = run("devices", device("/nonexistent/compofa"))
    assert_one_line_error(refused, "has no `/nonexistent/compofa` on its PATH", "pip install compofa there")


def test_an_unreachable_or_refusing_host_is_one_line(ssh: SshServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    refused = run("devices", f"ssh://{HOST_ALIAS}.invalid")
    assert_one_line_error(refused, f"cannot reach {HOST_ALIAS}.invalid over ssh")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = ssh.ssh_config.read_text().replace(str(ssh.folder / "client_key"), str(other))
    (tmp_path / "ssh_config").write_text(config)
    monkeypatch.setenv("COMPOFA_SSH_COMMAND", shlex.join(["ssh", "-F", str(tmp_path / "ssh_config")]))
    assert_one_line_error(run("devices", device()), f"cannot reach {HOST_ALIAS} over ssh", "Permission denied")


def test_a_stream_that_is_no_agent_is_refused(ssh: SshServer) -> None:
    refused = run("devices", device("echo 'not an agent'; true"))
    assert_one_line_error(refused, f"the agent on {HOST_ALIAS} stopped")


@pytest.mark.parametrize(("url", "says"), [
    ("ssh://", "names no host"),
    ("ssh://host:port", "port that is not a number"),
    ("ssh://host/onnxruntime/extra", "names one backend"),
    ("ssh://host?shell=bash", "the settings after .* are agent=COMMAND and retries=N, not shell"),
    ("ssh://host/onnxruntime?retries=-1", "retries= is how often to reconnect"),
    ("host", "looks like ssh://"),
])
def test_bad_remote_devices_are_refused(url: str, says: str) -> None:
    with pytest.raises(RemoteError, match=says):
        SshTarget.parse(url)


def test_a_remote_device_names_its_parts() -> None:
    target = SshTarget.parse("ssh://pi@board.local:2222/onnxruntime?agent=/opt/venv/bin/compofa")
    assert (target.user, target.host, target.port, target.backend, target.agent) == (
        "pi", "board.local", 2222, "onnxruntime", "/opt/venv/bin/compofa")
    assert str(target) == "ssh://pi@board.local:2222/onnxruntime"
    assert target.command()[-2:] == ["pi@board.local", "/opt/venv/bin/compofa agent"]


def test_models_move_once_by_content_hash(ssh: SshServer, tmp_path: Path) -> None:
    """A cached graph and its external weight files reach the device's store once: a second model sharing
    them sends only what is new, the same model again sends nothing, and ONNX Runtime loads the laid-out copy."""
    import numpy as np
    import onnxruntime as ort

    from compofa.graphs.cache import OnnxExporter
    from compofa.graphs.seeded import SeededWeights
    from compofa.remote.ssh import AgentConnection
    from compofa.space import get_space

    specs = list(get_space("compofa").enumerate([160]))[:2]
    exporter = OnnxExporter(SeededWeights("mobilenetv3", 1.2), 1, tmp_path / "cache")
    first, second = (exporter.path(spec) for spec in specs)
    store = tmp_path / "device-cache"
    agent = f"COMPOFA_CACHE_DIR={shlex.quote(str(store))} {AGENT}"
    with AgentConnection(SshTarget.parse(device(agent))) as connection:
        remote = Path(connection.send_model(first))
        sent_once = connection.sent_bytes
        assert connection.send_model(first) == str(remote) and connection.sent_bytes == sent_once
        connection.send_model(second)
        shared_too = connection.sent_bytes - sent_once
    weights = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*.bin"))
    assert sent_once > 0 and 0 < shared_too < sent_once  # the second subnet shares most of the first's weights
    assert sent_once + shared_too <= weights + first.stat().st_size + second.stat().st_size
    assert remote.is_relative_to(store)
    session = ort.InferenceSession(str(remote), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32)
    local = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run(None, {"input": image})[0], local.run(None, {"input": image})[0])


def test_the_store_keeps_only_what_it_was_sent_and_inside_its_folder(tmp_path: Path) -> None:
    from compofa.agent.store import ModelStore, StoreError, file_hash

    store = ModelStore(tmp_path / "store")
    data = b"weights"
    with pytest.raises(StoreError, match="the transfer was damaged"):
        store.put(file_hash(b"other"), data)
    store.put(file_hash(data), data)
    assert store.missing([file_hash(data), file_hash(b"x")]) == [file_hash(b"x")]
    for bad in ("../escape.bin", "/etc/passwd", "w/../../escape.bin", ""):
        with pytest.raises(StoreError, match="inside the model's folder"):
            store.model({"m.onnx": file_hash(data), bad: file_hash(data)}, "m.onnx")
    with pytest.raises(StoreError, match="never sent"):
        store.model({"m.onnx": file_hash(b"x")}, "m.onnx")
    path = store.model({"m.onnx": file_hash(data), "w/a.bin": file_hash(data)}, "m.onnx")
    assert path.read_bytes() == data and (path.parent / "w" / "a.bin").read_bytes() == data
