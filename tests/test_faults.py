"""Faults and bad input, by command: nothing lost, nothing made up, nothing touched that was refused.

Every case asserts what the README's "Errors" section promises: one line on
stderr starting with ``error:``, exit code 2 (130 for Ctrl-C), no traceback,
a refused file byte for byte as it was, no file left behind (no table, no
``-wal``/``-shm``/``.lock``, no half-written output), and tables whose rounds
are neither lost nor duplicated. Full disks and read-only media are real
file systems (a small tmpfs this test mounts; skipped, saying why, where it
cannot); kills and interrupts hit a real ``compofa`` process at a random
moment of its run (the simulated device spends real time per sample).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import fake_device  # noqa: F401  (registers the "fake" backend)
import pytest
from cli_helpers import assert_one_line_error, run

from compofa.profiler import NOISY
from compofa.profiler.noise import QUIET_ROUNDS_ENOUGH
from compofa.tables import LatencyTable

TESTS = Path(__file__).parent
SPEC = "compofa-r160-k33e33_k55e33_k33e33_k33e33_k55e33"
FAKE = ("--device", "fake", "--resolution", "160", "--round-seconds", "0.05")


def profile(table: Path, *extra: str, limit: int = 4) -> tuple[str, ...]:
    return ("profile", *FAKE, "--limit", str(limit), "--table", str(table), "--quiet", *extra)


def files(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by relative path, with its SHA-256: what a refusal must leave as it was."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def made_table(tmp_path: Path, name: str = "t.db", limit: int = 4) -> Path:
    table = tmp_path / name
    result = run(*profile(table, limit=limit))
    assert result.exit_code == 0, result.output
    return table


def round_identities(table: Path) -> list[tuple]:  # type: ignore[type-arg]
    with LatencyTable.open(table) as store:
        return store.connection.execute(
            "SELECT r.started_at, u.host, u.fingerprint, r.spec, r.round_index FROM rounds r JOIN runs u ON u.id = r.run_id"
        ).fetchall()


def assert_whole(table: Path, profiled_only: bool = True) -> None:
    """The table passes SQLite's integrity check and holds no round twice; in a table only profiling wrote,
    every finished entry (not left noisy) was computed from exactly the kept rounds its subnet has, less
    disturbed ones that quiet rounds replaced: nothing measured was lost or counted twice. (A merge keeps the
    rounds of both tables for an entry both have.)"""
    with LatencyTable.open(table) as store:
        assert store.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for entry in store.entries() if profiled_only else ():
            rounds = store.rounds(entry.device_id, entry.key)
            if entry.reason != NOISY:
                kept = sum(not r.discarded for r in rounds)
                quiet_enough = entry.rounds >= QUIET_ROUNDS_ENOUGH
                assert entry.rounds == kept or (quiet_enough and entry.rounds < kept), entry.key.spec
    identities = round_identities(table)
    assert len(identities) == len(set(identities)), "a round is stored twice"


# -- file systems this test can make: a small disk, read-only media ------------------------------------------


@contextlib.contextmanager
def tmpfs(folder: Path, size_kb: int) -> Iterator[Path]:
    folder.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("cannot mount a tmpfs here: no mount command")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], check=False,
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


def fill(folder: Path) -> Path:
    from fake_device import fill_disk

    filler = folder / "filler"
    fill_disk(str(filler))
    return filler


# -- profile ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--width", "2.0"), "width 2 is not a mobilenetv3 width"),
        (("--round-seconds", "nan"), "round seconds must be a positive number"),
        (("--round-seconds", "0"), "round seconds must be a positive number"),
        (("--round-seconds", "-1"), "round seconds must be a positive number"),
        (("--target-ci", "nan"), "target CI"),
        (("--min-rounds", "5", "--max-rounds", "2"), "--min-rounds 5 is more than --max-rounds 2"),
        (("--threads", "0"), "--threads"),
        (("--batch", "-5"), "--batch"),
        (("--precision", "fp8"), "--precision"),
        (("--shard", "0/2"), "--shard"),
    ],
)
def test_profile_refusals_create_nothing_and_change_nothing(tmp_path: Path, args: tuple[str, ...],
                                                            fragment: str) -> None:
    """A refused profile creates no table; a refused profile of an existing table leaves it (and its folder) as
    it was: no device row, no run row, no -wal, -shm or lock file."""
    assert_one_line_error(run(*profile(tmp_path / "new.db"), *args), fragment)
    assert not list(tmp_path.iterdir())
    made_table(tmp_path)
    before = files(tmp_path)
    assert_one_line_error(run(*profile(tmp_path / "t.db"), *args), fragment)
    assert files(tmp_path) == before


def _corrupt(path: Path, how: str) -> None:
    if how == "rounds page":  # the case: passes a header check, fails on the first write
        with sqlite3.connect(path) as connection:
            root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'rounds'").fetchone()[0]
            size = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.close()
        data = bytearray(path.read_bytes())
        data[(root - 1) * size : root * size] = random.Random(0).randbytes(size)
        path.write_bytes(bytes(data))
    elif how == "entries page":
        with sqlite3.connect(path) as connection:
            root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'entries'").fetchone()[0]
            size = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.close()
        data = bytearray(path.read_bytes())
        data[(root - 1) * size + 8 : root * size] = b"\xfe" * (size - 8)
        path.write_bytes(bytes(data))
    elif how == "meta only":
        path.unlink()
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            connection.executemany("INSERT INTO meta VALUES (?, ?)",
                                   [("application", "compofa-latency-table"), ("schema_version", "1")])
        connection.close()
    elif how == "schema abc":
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
        connection.close()
    for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        companion.unlink(missing_ok=True)


DAMAGE = {"rounds page": "corrupt", "entries page": "corrupt", "meta only": "lacks the devices",
          "schema abc": "schema_version is 'abc'"}


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_tables_are_refused_by_every_command_untouched(tmp_path: Path, how: str) -> None:
    """Damaged pages, a file with only the meta table, a schema_version that is no number: every command that
    reads or writes the table refuses it in one line before touching it; the folder stays byte-identical."""
    good = made_table(tmp_path, "good.db")
    table = made_table(tmp_path, "bad.db")
    _corrupt(table, how)
    before = files(tmp_path)
    commands = [
        profile(table),
        ("table", "show", str(table)),
        ("table", "show", str(table), "--bucket", "auto"),
        ("table", "export", str(table), "-o", str(tmp_path / "out.json")),
        ("table", "diff", str(table), str(good)),
        ("table", "merge", str(table), str(good)),
        ("table", "merge", str(tmp_path / "merged.db"), str(good), str(table)),
        ("search", "--latency", f"table:{table}", "--target", "50%"),
        ("search", "--latency", "device:fake", "--table", str(table), "--target", "50%", "--resolution", "160"),
    ]
    for command in commands:
        assert_one_line_error(run(*command), DAMAGE[how])
        assert files(tmp_path) == before, command


def test_refused_wal_table_gets_no_companion_files(tmp_path: Path) -> None:
    """A WAL-mode table refused (newer schema, another setup) gets no empty -wal/-shm beside it."""
    table = made_table(tmp_path)
    before = files(tmp_path)
    assert_one_line_error(run(*profile(table), "-O", "noise=0.02"), "different setup")
    assert files(tmp_path) == before
    with sqlite3.connect(table) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.close()
    before = files(tmp_path)
    for command in (profile(table), ("table", "show", str(table))):
        assert_one_line_error(run(*command), "schema version 99")
        assert files(tmp_path) == before


def test_reading_leaves_nothing_beside_the_table(tmp_path: Path) -> None:
    """Read-only commands leave the table byte-identical and make no -wal/-shm files that outlive them."""
    table = made_table(tmp_path)
    before = files(tmp_path)
    for command in (("table", "show", str(table)), ("table", "diff", str(table), str(table))):
        assert run(*command).exit_code == 0
        assert files(tmp_path) == before, command
    # the table holds 4 of the 243 subnets: search answers over those and says so, or refuses with --complete
    searched = run("search", "--latency", f"table:{table}", "--target", "50%", "--resolution", "160")
    assert searched.exit_code == 0 and "holds 4 of the 243" in searched.stderr, searched.output
    assert_one_line_error(run("search", "--latency", f"table:{table}", "--target", "50%", "--resolution", "160",
                              "--complete"), "lacks 239")
    assert files(tmp_path) == before


def test_busy_machine_finishes_with_honest_intervals_and_rerun_measures_them_first(tmp_path: Path) -> None:
    """On a machine whose speed keeps jumping, subnets whose rounds keep being discarded are finished as
    unstable within the run's budget (the run ends, the summary says how many and why); their intervals are
    wider than a quiet run's; the next run measures them again first and, on a quiet machine, cleanly."""
    busy = tmp_path / "busy.db"
    result = run(*profile(busy, "-O", "busy=0.3", "-O", "busy_every=3", "--max-rounds", "4", limit=6))
    assert result.exit_code == 0, result.output
    assert "unstable:" in result.output and "noise-limited: the machine was disturbed" in result.output
    with LatencyTable.open(busy) as store:
        entries = store.entries()
        noisy = [e for e in entries if e.reason == NOISY]
    assert len(entries) == 6 and noisy
    assert all(not e.stable and ("discarded" in e.warnings[-1] or "noise-limited" in e.warnings[-1]) for e in noisy)
    quiet = made_table(tmp_path, "quiet.db", limit=6)
    with LatencyTable.open(quiet) as store:
        quiet_ci = sorted(e.relative_ci for e in store.entries())
    assert max(e.relative_ci for e in noisy) > quiet_ci[len(quiet_ci) // 2]
    assert_whole(busy)
    rerun = run(*profile(busy, limit=6))
    assert rerun.exit_code == 0, rerun.output
    assert f"measured again first: {len(noisy)} {'entry' if len(noisy) == 1 else 'entries'}" in rerun.output
    with LatencyTable.open(busy) as store:
        assert all(e.reason != NOISY for e in store.entries())
    assert_whole(busy)


def test_a_disturbed_run_is_measured_again_and_gives_the_precision_back(tmp_path: Path) -> None:
    """The table knows the machine's quiet level from an earlier run; a run during other work leaves its new
    subnets noise-limited (`noisy`, saying so), and a rerun on the quiet machine measures them again first,
    until they reach the target as the quiet ones did."""
    table = made_table(tmp_path, limit=3)
    disturbed = run(*profile(table, "-O", "disturb=0.3", "--max-rounds", "3", limit=6))
    assert disturbed.exit_code == 0, disturbed.output
    with LatencyTable.open(table) as store:
        noisy = [e for e in store.entries() if e.reason == NOISY]
    assert noisy and all("noise-limited" in e.warnings[-1] or "discarded" in e.warnings[-1] for e in noisy)
    assert "noise-limited: the machine was disturbed" in disturbed.stdout
    assert f"{len(noisy)} noise-limited: measured while the machine was disturbed" in run("table", "show",
                                                                                      str(table)).stdout
    rerun = run(*profile(table, limit=6))
    assert rerun.exit_code == 0 and f"measured again first: {len(noisy)} {'entry' if len(noisy) == 1 else 'entries'}" in rerun.output, rerun.output
    with LatencyTable.open(table) as store:
        entries = store.entries()
    assert len(entries) == 6 and all(e.reason == "converged" and e.relative_ci <= 0.01 for e in entries)
    assert_whole(table)


def test_disk_filling_mid_profile_keeps_every_finished_round(tmp_path: Path) -> None:
    """The disk fills during a run: one line, exit 2, the table intact with what was committed; after space
    is freed the same command resumes, loses none of those rounds and repeats none."""
    with tmpfs(tmp_path / "disk", 2048) as disk:
        table = disk / "t.db"
        assert run(*profile(table, limit=2)).exit_code == 0
        filler = disk / "filler"
        result = run(*profile(table, "-O", "fill_at=400", "-O", f"fill_path={filler}", limit=10))
        assert_one_line_error(result, "is full", str(table))
        kept = set(round_identities(table))
        assert kept and filler.exists()
        assert_whole(table)
        filler.unlink()
        assert run(*profile(table, limit=10)).exit_code == 0
        assert kept <= set(round_identities(table))
        assert_whole(table)
        with LatencyTable.open(table) as store:
            assert len(store.entries()) == 10
        assert sorted(p.name for p in disk.iterdir()) == ["t.db"]


def test_full_disk_refusals_write_nothing(tmp_path: Path) -> None:
    """On a full disk: profile, merge, table export, search -o, export and report fail in one line, leave
    every file as it was and nothing half-written; reading the table still works."""
    source = made_table(tmp_path, limit=6)  # a report needs 5 entries
    with tmpfs(tmp_path / "disk", 512) as disk:
        table = disk / "t.db"
        shutil.copy(source, table)
        (disk / "report").mkdir()
        (disk / "report" / "index.html").write_text("the previous report")
        fill(disk)
        before = files(disk)
        commands = [
            (profile(table, limit=6), "full"),
            (profile(disk / "new.db"), "full"),
            (("table", "merge", str(table), str(source)), "full"),
            (("table", "merge", str(disk / "merged.db"), str(source)), "full"),
            (("table", "export", str(source), "-o", str(disk / "x.json")), "No space left"),
            (("search", "--latency", "lut:note10", "--target", "20", "-o", str(disk / "s.json")), "No space left"),
            (("export", SPEC, "-o", str(disk / "x.onnx")), "No space left"),
            (("report", "--table", str(source), "--no-lut", "-o", str(disk / "report"), "--quiet"), "No space left"),
            (("report", "--table", str(source), "--no-lut", "-o", str(disk / "new-report"), "--quiet"), "No space"),
        ]
        for command, fragment in commands:
            assert_one_line_error(run(*command), fragment)
            assert files(disk) == before, command
        shown = run("table", "show", str(table))
        assert shown.exit_code == 0 and "6 entries" in shown.output
        assert files(disk) == before


def test_read_only_media(tmp_path: Path) -> None:
    """A table copied onto read-only media without its -wal/-shm is read by every read command; writing to it
    or into that folder is refused in one line."""
    source = made_table(tmp_path)
    with tmpfs(tmp_path / "media", 1024) as media:
        shutil.copy(source, media / "t.db")
        read_only(media)
        table = media / "t.db"
        shown = run("table", "show", str(table))
        assert shown.exit_code == 0 and "4 entries" in shown.output
        exported = run("table", "export", str(table), "-o", str(tmp_path / "x.json"))
        assert exported.exit_code == 0 and len(json.loads((tmp_path / "x.json").read_text())) == 4
        assert run("table", "diff", str(table), str(source)).exit_code == 0
        # 4 of the 243 subnets: search reads the table and answers over those
        searched = run("search", "--latency", f"table:{table}", "--target", "100", "--resolution", "160")
        assert searched.exit_code == 0 and "holds 4 of the 243" in searched.stderr, searched.output
        assert_one_line_error(run(*profile(table)), "read-only")
        assert_one_line_error(run("table", "merge", str(table), str(source)), "read-only")
        assert_one_line_error(run("table", "merge", str(media / "m.db"), str(source)), "not writable")
        assert_one_line_error(run("report", "--table", str(source), "--no-lut", "-o", str(media / "r"), "--quiet"),
                              "not writable")
        assert sorted(p.name for p in media.iterdir()) == ["t.db"]


# -- killing and interrupting a real process ------------------------------------------------------------------


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COMPOFA_TEST_CHECKPOINT_SECONDS": "0.2"}
    return subprocess.Popen([sys.executable, str(TESTS / "fake_compofa.py"), *args], cwd=TESTS, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rounds_in(table: Path) -> int:
    if not table.exists():
        return 0
    with LatencyTable.open(table) as store:
        return int(store.connection.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])


def _wait_for_rounds(process: subprocess.Popen[str], table: Path, timeout: float = 120) -> None:
    """Until the running process has committed rounds of its own."""
    before = _rounds_in(table)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if _rounds_in(table) > before:
            return
        time.sleep(0.1)
    raise AssertionError("the profile never started measuring")


SLOW = ("-O", "sleep=1", "-O", "noise=0.01")


def test_kill_9_at_random_moments_loses_only_the_round_in_flight(tmp_path: Path) -> None:
    """kill -9 a profile three times at random moments: each time the table is whole, keeps every round it
    had, and the .db file alone (copied without its -wal, as a user copying 'the table' would) holds all but
    the last moments; the next run resumes and the finished table counts every round exactly once."""
    table = tmp_path / "t.db"
    moments = [random.Random(12 + kill).uniform(0.1, 1.5) for kill in range(3)]
    kept: set[tuple] = set()  # type: ignore[type-arg]
    for moment in moments:
        process = _start(*profile(table, *SLOW, limit=24))
        _wait_for_rounds(process, table)
        time.sleep(moment)
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
        process.communicate()
        alone = tmp_path / "alone" / "t.db"
        alone.parent.mkdir(exist_ok=True)
        shutil.copy(table, alone)  # before anything opens (and so checkpoints) the table
        rounds = set(round_identities(table))
        assert kept <= rounds and len(rounds) > len(kept)
        kept = rounds
        assert_whole(table)
        with LatencyTable.open(table) as store:
            timed = store.connection.execute("SELECT timed_at FROM rounds").fetchall()
        with LatencyTable.open(alone) as store:
            in_file = store.connection.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
        older = sum(at < killed_at - 1.5 for (at,) in timed)  # committed well before the last checkpoint
        assert in_file >= older
        shutil.rmtree(alone.parent)
    result = run(*profile(table, limit=24))
    assert result.exit_code == 0, result.output
    assert kept <= set(round_identities(table))
    assert_whole(table)
    with LatencyTable.open(table) as store:
        assert len(store.entries()) == 24
    assert not list(tmp_path.glob("*.lock"))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "kill", "hangup"])
def test_interrupt_at_a_random_moment_keeps_every_round(tmp_path: Path, stop: signal.Signals) -> None:
    """Ctrl-C, a plain kill or a dropped terminal mid-run: exit 130 with one line saying how to resume; the
    table is whole and closed properly (no lock or -wal left); the rerun finishes."""
    table = tmp_path / "t.db"
    process = _start(*profile(table, *SLOW, limit=12))
    _wait_for_rounds(process, table)
    time.sleep(random.Random(int(stop)).uniform(0.1, 1.0))
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0] and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.db"]
    kept = set(round_identities(table))
    assert kept
    assert_whole(table)
    assert run(*profile(table, limit=12)).exit_code == 0
    assert kept <= set(round_identities(table))
    assert_whole(table)


# -- table merge -----------------------------------------------------------------------------------------------


def test_merge_into_a_table_being_profiled_is_refused(tmp_path: Path) -> None:
    """A merge into a table another process is profiling is refused (naming that process), so it cannot be
    lost under the profiler; once the profile ends the same merge goes in, and both sets are there."""
    other = made_table(tmp_path, "other.db", limit=6)
    table = tmp_path / "t.db"
    process = _start(*profile(table, *SLOW, limit=3))
    _wait_for_rounds(process, table)
    assert_one_line_error(run("table", "merge", str(table), str(other)), "is being written by process",
                          "profile)")
    assert process.wait(timeout=120) == 0, process.communicate()
    merged = run("table", "merge", str(table), str(other))
    assert merged.exit_code == 0, merged.output
    with LatencyTable.open(table) as store:
        assert len(store.entries()) == 6  # its own 3 (the first 3 of other's 6) are kept, other's 3 more added
    assert_whole(table, profiled_only=False)


def test_merging_twice_adds_nothing_and_a_resumed_profile_counts_rounds_once(tmp_path: Path) -> None:
    """A shard killed mid-run, merged twice (and --force merged again): the second merge adds no run or round;
    the profile resumed on the merged table finishes its subnets from the real rounds only."""
    shard = tmp_path / "ks.db"
    assert run(*profile(shard, "-O", "fail_after=300", limit=6)).exit_code == 130  # Ctrl-C mid-run
    merged = tmp_path / "dupe.db"
    first = run("table", "merge", str(merged), str(shard))
    assert first.exit_code == 0, first.output
    copies = round_identities(merged)
    again = run("table", "merge", str(merged), str(shard))
    forced = run("table", "merge", "--force", str(merged), str(shard))
    for result in (again, forced):
        assert result.exit_code == 0 and "0 runs, 0 rounds, 0 accuracy rows added" in result.output, result.output
    assert round_identities(merged) == copies
    resumed = run(*profile(merged, limit=6))
    assert resumed.exit_code == 0, resumed.output
    assert_whole(merged)
    with LatencyTable.open(merged) as store:
        assert all(e.rounds <= 8 for e in store.entries())


def test_refused_merge_leaves_the_output_as_it_was(tmp_path: Path) -> None:
    """An input of another setup, a damaged input, or the output among the inputs: refused, output unchanged."""
    output = made_table(tmp_path, "out.db")
    other_setup = tmp_path / "setup.db"
    assert run(*profile(other_setup, "-O", "noise=0.03")).exit_code == 0
    damaged = made_table(tmp_path, "damaged.db")
    _corrupt(damaged, "meta only")
    accuracy = tmp_path / "accuracy.db"  # listed first: its rows would go in before the refused input
    with LatencyTable.open(accuracy, writable=True, create=True) as store:
        store.accuracy.put("compofa", 1.2, SPEC, 160, "w.pt:abc", 0.7, 0.9, 100, {})
    before = files(tmp_path)
    assert_one_line_error(run("table", "merge", str(output), str(other_setup)), "different setup")
    assert_one_line_error(run("table", "merge", str(output), str(accuracy), str(other_setup)), "different setup")
    assert_one_line_error(run("table", "merge", str(output), str(damaged)), "lacks")
    assert_one_line_error(run("table", "merge", str(output), str(output)), "is the output table")
    assert files(tmp_path) == before


# -- table show / export / diff ---------------------------------------------------------------------------------


def test_table_export_filters_that_match_nothing_are_refused(tmp_path: Path) -> None:
    table = made_table(tmp_path)
    assert_one_line_error(run("table", "export", str(table), "--device-id", "99", "-o", str(tmp_path / "x.json")),
                          "no device 99", "1 (fake)")
    assert_one_line_error(run("table", "export", str(table), "--space", "ofa-mbv3", "-o", str(tmp_path / "x.json")),
                          "no ofa-mbv3 entries", "compofa")
    assert_one_line_error(run("table", "export", str(table), "-o", str(tmp_path)), "is a directory")
    assert not (tmp_path / "x.json").exists()


# -- search ----------------------------------------------------------------------------------------------------------


def test_search_messages_say_what_search_can_do(tmp_path: Path) -> None:
    table = made_table(tmp_path)
    other = run("search", "--latency", "device:fake", "-O", "noise=0.05", "--table", str(table), "--target", "50%",
                "--resolution", "160")
    assert_one_line_error(other, "different setup", "another --table")
    assert "--force" not in other.stderr
    assert_one_line_error(run("search", "--latency", f"table:{table}", "--device-id", "7", "--target", "50%"),
                          "has no device 7", "1 (fake)")
    wrong_space = run("search", "--space", "ofa-mbv3", "--latency", f"table:{table}", "--target", "50%")
    assert_one_line_error(wrong_space, "no ofa-mbv3 entries", "--space compofa", "device:NAME")
    assert "compofa profile" not in wrong_space.stderr
    # refused before measuring anything, not after
    assert_one_line_error(run("search", "--latency", "device:fake", "--table", str(tmp_path / "new.db"), "--target",
                              "50%", "--resolution", "160", "-o", str(tmp_path / "best.txt")), ".json or .csv")
    assert not (tmp_path / "new.db").exists()


# -- export --result -------------------------------------------------------------------------------------------------


def test_results_files(tmp_path: Path) -> None:
    """A CSV that search wrote is read back; empty, incomplete or foreign results files are one-line errors."""
    csv_path = tmp_path / "best.csv"
    assert run("search", "--latency", "lut:note10", "--target", "20,25", "-o", str(csv_path)).exit_code == 0
    exported = run("export", "--result", str(csv_path), "--target", "25", "-o", str(tmp_path / "best.onnx"))
    assert exported.exit_code == 0 and (tmp_path / "best.onnx").exists(), exported.output
    cases = {
        "empty.json": ({"format": "compofa-search", "version": 1, "width": 1.2, "results": []}, "holds no results"),
        "nowidth.json": ({"format": "compofa-search", "version": 1, "results": [{"spec": SPEC, "target": "20"}]},
                         "lacks width"),
        "notarget.json": ({"format": "compofa-search", "version": 1, "width": 1.2, "results": [{"spec": SPEC}]},
                          None),
    }
    for name, (data, fragment) in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
        result = run("export", "--result", str(tmp_path / name), "-o", str(tmp_path / "x.onnx"))
        if fragment is None:  # one result needs no target to be chosen
            assert result.exit_code == 0, result.output
        else:
            assert_one_line_error(result, fragment)
    (tmp_path / "table.csv").write_text("space,spec\ncompofa,x\n")
    assert_one_line_error(run("export", "--result", str(tmp_path / "table.csv"), "-o", str(tmp_path / "y.onnx")),
                          "not a compofa search results file")
    (tmp_path / "old.csv").write_text(csv_path.read_text().replace(",width", ",w"))
    assert_one_line_error(run("export", "--result", str(tmp_path / "old.csv"), "--target", "20", "-o",
                              str(tmp_path / "y.onnx")), "no width column")
    assert not (tmp_path / "y.onnx").exists()


# -- lut build ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(("--width", "2.0"), "width 2 is not"), (("--round-seconds", "0"), "round seconds"),
     (("--round-seconds", "-1"), "round seconds"), (("--target-ci", "2"), "target CI")],
)
def test_lut_build_refusals(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    """Refused before any work: one line (no progress line before it), no folder."""
    result = run("lut", "build", "--resolution", "160", "-o", str(tmp_path / "lut"), *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "lut").exists()


def test_lut_build_into_a_folder_of_another_width_prints_only_its_error(tmp_path: Path) -> None:
    """Refused inside the build (the folder holds a w1.2 table, asked for w1.0): no progress line before the
    error, and the folder is left as it was."""
    from importlib import resources

    folder = tmp_path / "lut"
    folder.mkdir()
    shipped = resources.files("compofa.data") / "note10_lut" / "160_lookup_table.yaml"
    (folder / "160_lookup_table.yaml").write_bytes(shipped.read_bytes())
    before = files(tmp_path)
    result = run("lut", "build", "--resolution", "160", "--width", "1.0", "-o", str(folder))
    assert_one_line_error(result, "already holds lookup tables that do not fit")
    assert result.stdout == "" and files(tmp_path) == before


# -- the command line itself ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("profile", "--threads", "0"),
        ("profile", "--batch", "-5"),
        ("profile", "--precision", "fp8"),
        ("export", SPEC, "-o", "."),
        ("table", "export", "t.db", "--format", "xml", "-o", "x"),
        ("search", "--latency", "flops", "--target", "300", "--generations", "0"),
        ("subnet", "sample", "-n", "-1"),
        ("nosuch",),
        ("export",),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...]) -> None:
    """click's own usage errors read like every other error: one `error:` line naming the option, exit 2."""
    result = run(*args)
    assert_one_line_error(result, "--help")
    assert "Usage:" not in result.output


# -- train ---------------------------------------------------------------------------------------------------------------


def _schedule_file(tmp_path: Path, name: str) -> Path:
    schedule = tmp_path / "phases.yaml"
    schedule.write_text(f"- {{name: {json.dumps(name)}, kind: teacher, space: compofa, epochs: 1, lr_per_256: 0.1, "
                        "distill: 0}\n")
    return schedule


def _images(root: Path, corrupt: bool) -> Path:
    for split in ("train", "val"):
        folder = root / split / "0"
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(b"not a png" if corrupt else b"")
    return root


@pytest.mark.parametrize("name", ["../../escaped_phase", "a/b", ".hidden", "..", "/abs"])
def test_phase_names_stay_inside_the_run_folder(tmp_path: Path, name: str) -> None:
    """A phase name that would leave the run folder (or hide in it) is refused before anything is written."""
    (tmp_path / "work").mkdir()
    data = _images(tmp_path / "work" / "data", corrupt=True)
    before = files(tmp_path)
    result = run("train", "--schedule", str(_schedule_file(tmp_path / "work", name)), "--data", str(data),
                 "-o", str(tmp_path / "work" / "run"), "--quiet")
    assert_one_line_error(result, "must be a plain name")
    (tmp_path / "work" / "phases.yaml").unlink()
    assert files(tmp_path) == before


def test_digits_dataset_is_written_whole(tmp_path: Path) -> None:
    """`compofa digits` onto a file is one line; on a full disk it leaves no part of a dataset."""
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(run("digits", "-o", str(tmp_path / "afile")), "is a file")
    with tmpfs(tmp_path / "disk", 512) as disk:
        assert_one_line_error(run("digits", "-o", str(disk / "digits")), "No space left")
        assert list(disk.iterdir()) == []


def test_train_output_onto_a_file(tmp_path: Path) -> None:
    data = _images(tmp_path / "data", corrupt=True)
    (tmp_path / "run").write_text("a file")
    assert_one_line_error(run("train", "--data", str(data), "-o", str(tmp_path / "run"), "--quiet"), "is a file")


def test_corrupt_training_image_is_named_and_leaves_no_phase_folder(tmp_path: Path) -> None:
    """An image that cannot be decoded (in a data-loading worker process) is one line naming the file; the
    phase that never finished an epoch leaves no folder behind."""
    data = _images(tmp_path / "data", corrupt=True)
    result = run("train", "--schedule", str(_schedule_file(tmp_path, "teacher")), "--data", str(data), "-o",
                 str(tmp_path / "run"), "--width", "1.0", "--resolution", "128", "--batch", "1", "--workers", "1",
                 "--quiet")
    assert_one_line_error(result, "cannot read image", "a.png")
    assert not (tmp_path / "run").exists()
