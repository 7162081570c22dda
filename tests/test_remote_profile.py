"""Profiling another machine through its agent over a real sshd on 127.0.0.1: whole rounds on the device.

Profile, `lut build` and a search that measures on demand all go through ssh; killing the agent mid-run loses
at most the round in flight, and the host reconnects and finishes; a device that stays away stops the run with
one line saying how to resume; another compofa version is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cli_helpers import assert_one_line_error, run
from compofa import __version__
from compofa.tables.store import LatencyTable
from sshd import AGENT, HOST_ALIAS, MISSING, SshServer, device

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

#: Short rounds: these tests check what is measured and kept, not how precisely.
QUICK = ("--resolution", "128", "--min-rounds", "2", "--max-rounds", "3", "--round-seconds", "0.03",
         "--target-ci", "0.5", "--quiet")


def _runs(table: Path) -> list[dict[str, object]]:
    with sqlite3.connect(f"file:{table}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT host, settings, fingerprint FROM runs ORDER BY id").fetchall()
    return [{"host": host, "settings": json.loads(settings), "fingerprint": json.loads(fp)}
            for host, settings, fp in rows]


def _round_keys(table: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{table}?mode=ro", uri=True) as connection:
        return [(spec, index) for spec, index in
                connection.execute("SELECT spec, round_index FROM rounds WHERE discarded IS NULL OR 1")]


def test_profile_runs_on_the_device_and_records_it(ssh: SshServer, tmp_path: Path) -> None:
    table = tmp_path / "remote.db"
    result = run("profile", "--device", device(backend="onnxruntime"), "--table", str(table), "--limit", "2", *QUICK)
    assert result.exit_code == 0, result.output
    assert "profiled 2 subnets" in result.stdout
    with LatencyTable.open(table) as store:
        entries = store.entries()
        assert len(entries) == 2 and all(e.median_ms > 0 and e.ci_low_ms <= e.median_ms <= e.ci_high_ms
                                         for e in entries)
        # what the device read beside time crossed with its rounds: the agent's session peak, and why no energy
        assert all(e.peak_memory_mb is not None and e.peak_memory_mb > 1 and e.p99_ms is not None for e in entries)
        assert all(e.energy_mj is not None or e.absent["energy"].startswith("no ") for e in entries)
        (row,) = store.devices()
    (record,) = _runs(table)
    settings = record["settings"]
    assert isinstance(settings, dict)
    assert settings["connection"] == {"scheme": "ssh", "host": HOST_ALIAS, "user": None, "port": None}
    assert row.name == "onnxruntime" and row.fingerprint == record["fingerprint"]
    assert row.fingerprint["backend"] == "onnxruntime" and row.fingerprint["threads"] == 1
    text = json.dumps(record)
    assert "client_key" not in text and "ssh_config" not in text  # no secret, not even where one lives
    # the device's clock is put on the host's: rounds are dated now, within the test's minute
    with LatencyTable.open(table) as store:
        started = [r.started_at for e in store.entries() for r in store.rounds(row.id, e.key)]
    assert started and all(abs(at - time.time()) < 120 for at in started)
    noisy = sum(e.reason == "noisy" for e in entries)  # a busy machine's entries are measured again, first
    again = run("profile", "--device", device(backend="onnxruntime"), "--table", str(table), "--limit", "2", *QUICK)
    assert again.exit_code == 0 and f"profiled {noisy} subnets" in again.stdout, again.output
    assert f"{2 - noisy} were already there" in again.stdout


def test_a_remote_litert_device_is_sent_the_tflite_models_it_runs(ssh: SshServer, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="the litert backend needs ai-edge-litert (pip install "
                        "'compofa[litert]')")
    table = tmp_path / "phone-preview.db"
    result = run("profile", "--device", device(backend="litert"), "--table", str(table), "--limit", "2", *QUICK)
    assert result.exit_code == 0, result.output  # LiteRT cannot read an ONNX file: the .tflite was sent
    with LatencyTable.open(table) as store:
        assert len(store.entries()) == 2
        (row,) = store.devices()
    assert row.name == "litert" and row.fingerprint["backend"] == "litert" and row.fingerprint["delegate"] == "xnnpack"


def test_a_remote_backend_must_be_named_and_exist(ssh: SshServer, tmp_path: Path) -> None:
    table = tmp_path / "t.db"
    assert_one_line_error(run("profile", "--device", device(), "--table", str(table), *QUICK),
                          "name the backend to use", "/onnxruntime", "compofa devices")
    assert_one_line_error(run("profile", "--device", device(backend="nope"), "--table", str(table), *QUICK),
                          "unknown device 'nope'")
    assert not table.exists()


def test_another_version_is_refused_before_anything_is_written(ssh: SshServer, tmp_path: Path) -> None:
    older = shlex.join([sys.executable, "-c", "import sys, compofa; compofa.__version__ = '0.0.1'; "
                                              "from compofa.agent.serve import main; sys.exit(main())"])
    table = tmp_path / "t.db"
    refused = run("profile", "--device", device(older, "onnxruntime"), "--table", str(table), *QUICK)
    assert_one_line_error(refused, "runs compofa 0.0.1", f"this is compofa {__version__}")
    assert not table.exists() and not list(tmp_path.iterdir())


def _killable_agent(folder: Path, comes_back: bool) -> str:
    """An agent command that leaves its process id in `folder`; with `comes_back` False, only the first
    connection finds an agent (the device stays away after it is lost)."""
    python = shlex.join([sys.executable, "-m", "compofa"])
    gate = "" if comes_back else f'[ -e {folder}/started ] && exit 3; '
    script = f'{gate}touch {folder}/started; echo $$ >> {folder}/pids; exec {python} "$@"'
    return shlex.join(["sh", "-c", script, "sh"])


def _profile_process(ssh: SshServer, agent: str, table: Path, limit: int, retries: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "COMPOFA_SSH_COMMAND": shlex.join(["ssh", "-F", str(ssh.ssh_config)])}
    url = device(agent, "onnxruntime") + retries
    return subprocess.Popen([sys.executable, "-m", "compofa", "profile", "--device", url, "--table", str(table),
                             "--limit", str(limit), *QUICK], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_agent_after_first_round(folder: Path, table: Path, process: subprocess.Popen[str]) -> int:
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if table.exists() and _count_rounds(table) >= 1:
            break
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    rounds_before = _count_rounds(table)
    os.kill(int((folder / "pids").read_text().split()[0]), signal.SIGKILL)
    return rounds_before


def _count_rounds(table: Path) -> int:
    try:
        with sqlite3.connect(f"file:{table}?mode=ro", uri=True) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])
    except sqlite3.Error:  # the table is being created
        return 0


def test_killing_the_agent_mid_run_loses_at_most_the_round_in_flight(ssh: SshServer, tmp_path: Path) -> None:
    table = tmp_path / "t.db"
    process = _profile_process(ssh, _killable_agent(tmp_path, comes_back=True), table, limit=3)
    rounds_before = _kill_agent_after_first_round(tmp_path, table, process)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert f"lost ssh://{HOST_ALIAS}/onnxruntime" in err and "reconnecting in 2 s (try 1 of 5)" in err
    assert len((tmp_path / "pids").read_text().split()) == 2  # one reconnection
    with LatencyTable.open(table) as store:
        assert len(store.entries()) == 3
    keys = _round_keys(table)
    assert len(keys) >= rounds_before and max(Counter(keys).values()) == 1  # nothing lost, nothing twice
    for spec in {s for s, _ in keys}:
        indices = sorted(i for s, i in keys if s == spec)
        assert indices == list(range(len(indices)))  # the round cut short was measured afresh, in its place


def test_a_device_that_stays_away_stops_the_run_with_how_to_resume(ssh: SshServer, tmp_path: Path) -> None:
    table = tmp_path / "t.db"
    process = _profile_process(ssh, _killable_agent(tmp_path, comes_back=False), table, limit=2, retries="&retries=1")
    rounds_before = _kill_agent_after_first_round(tmp_path, table, process)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "and 1 tries to reconnect" in lines[0] and "run the same command again to resume" \
        in lines[0], err
    assert "Traceback" not in err
    assert _count_rounds(table) >= rounds_before  # what was measured before is still there
    # the device is back: the same command resumes and finishes
    (tmp_path / "started").unlink()
    (tmp_path / "pids").unlink()
    finished = _profile_process(ssh, _killable_agent(tmp_path, comes_back=True), table, limit=2)
    out, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err
    assert "profiled" in out
    keys = _round_keys(table)
    assert max(Counter(keys).values()) == 1
    with LatencyTable.open(table) as store:
        assert len(store.entries()) == 2


def test_lut_build_and_search_measure_on_the_device(ssh: SshServer, tmp_path: Path) -> None:
    lut = tmp_path / "lut"
    built = run("lut", "build", "--device", device(backend="onnxruntime"), "--resolution", "160", "--max-rounds", "3",
                "--round-seconds", "0.005", "--target-ci", "0.5", "-o", str(lut), "--quiet")
    assert built.exit_code == 0, built.output
    assert (lut / "160_lookup_table.yaml").stat().st_size > 0 and "measured 36 layers" in built.stdout
    memo = tmp_path / "memo.db"
    found = run("search", "--latency", f"device:{device(backend='onnxruntime')}", "--resolution", "160",
                "--table", str(memo), "--strategy", "evolution", "--population", "4", "--generations", "1",
                "--round-seconds", "0.02", "--min-rounds", "1", "--max-rounds", "1", "--target", "1000", "--quiet",
                "-o", str(tmp_path / "found.json"))
    assert found.exit_code == 0, found.output
    record = json.loads((tmp_path / "found.json").read_text())["results"][0]
    assert record["spec"].startswith("compofa-r160-") and record["latency_ms"] > 0
    assert all(r["settings"]["connection"]["host"] == HOST_ALIAS for r in _runs(memo))


def _fleet_process(ssh: SshServer, urls: list[str], table: Path, limit: int) -> subprocess.Popen[str]:
    env = {**os.environ, "COMPOFA_SSH_COMMAND": shlex.join(["ssh", "-F", str(ssh.ssh_config)])}
    devices = [arg for url in urls for arg in ("--device", url)]
    return subprocess.Popen([sys.executable, "-m", "compofa", "profile", *devices, "--table", str(table),
                             "--limit", str(limit), *QUICK], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rounds_by_run(table: Path) -> dict[int, set[str]]:
    with sqlite3.connect(f"file:{table}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT run_id, spec FROM rounds").fetchall()
    by_run: dict[int, set[str]] = {}
    for run_id, spec in rows:
        by_run.setdefault(run_id, set()).add(spec)
    return by_run


def test_a_fleet_of_two_agents_shares_one_job_into_one_table(ssh: SshServer, tmp_path: Path) -> None:
    """Two agents (one machine here: the test checks what is kept, not speed) take configurations as they
    free up; every entry is measured once, under the first device, and each run keeps its own connection."""
    urls = [device(f"COMPOFA_CACHE_DIR={tmp_path / name} {AGENT}", "onnxruntime") for name in ("a", "b")]
    table = tmp_path / "fleet.db"
    out, err = _fleet_process(ssh, urls, table, limit=5).communicate(timeout=300)
    assert "profiled 5 subnets" in out, err
    with LatencyTable.open(table) as store:
        (row,) = store.devices()
        assert len(store.entries()) == 5
        assert store.reference(row.id, store.entries()[0].key) is not None
    by_run = _rounds_by_run(table)
    assert len(by_run) == 2 and all(by_run.values())  # both devices took work
    first, second = by_run.values()
    assert not first & second and len(first | second) == 5  # each configuration on one device
    assert max(Counter(_round_keys(table)).values()) == 1
    assert all(r["settings"]["connection"]["host"] == HOST_ALIAS for r in _runs(table))
    assert (tmp_path / "a").is_dir() and (tmp_path / "b").is_dir()  # each agent kept its own model store


def test_a_fleet_member_that_drops_out_leaves_its_work_to_the_others(ssh: SshServer, tmp_path: Path) -> None:
    steady = device(f"COMPOFA_CACHE_DIR={tmp_path / 'a'} {AGENT}", "onnxruntime")
    (tmp_path / "b").mkdir()
    leaving = device(_killable_agent(tmp_path / "b", comes_back=False), "onnxruntime") + "&retries=0"
    table = tmp_path / "fleet.db"
    process = _fleet_process(ssh, [steady, leaving], table, limit=4)
    deadline = time.time() + 120
    while time.time() < deadline and not (table.exists() and len(_rounds_by_run(table)) >= 2):
        time.sleep(0.1)  # until the second device has committed a round
    os.kill(int((tmp_path / "b" / "pids").read_text().split()[0]), signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "device 2 of 2 dropped out" in err and "the others take its work" in err
    with LatencyTable.open(table) as store:
        assert len(store.entries()) == 4
    assert max(Counter(_round_keys(table)).values()) == 1
