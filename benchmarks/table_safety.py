"""What the table store's safeguards cost on a table of a whole profile's size.

Since the store checks every file before using it (SQLite's quick check, the
expected tables, the schema version), takes a writer lock, checkpoints its
WAL while writing, and merges in place recognising every run and round by
its identity, this measures those steps on two shard tables that together
hold all 243 CompOFA subnets at five resolutions (1215 entries), each with
the rounds and samples a real profile leaves (6 rounds of 40 samples and 10
warm-up runs each, the figures of `profile_speed.py`'s runs). The sample
values are synthetic: only the store's own work is timed.

Goals: opening and checking the merged table in <= 0.2 s (a search or a
`table show` does it once); committing a round in <= 5 ms (the profiler
commits after each round of a few hundred ms); merging the two shards in
<= 10 s, and merging the same shard again (which adds nothing) no slower.

Run: ``python benchmarks/table_safety.py`` (``--resolutions 1`` for a smoke
run). Prints a table; asserts nothing. Don't run other work meanwhile.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from compofa.jobs.merge import merge_tables
from compofa.jobs.profile import Shard
from compofa.profiler import Measurement, RoundRecord
from compofa.space import get_space
from compofa.tables import EntryKey, LatencyTable

FINGERPRINT = {"backend": "synthetic", "batch": 1, "precision": "fp32", "threads": 1}


def fill_shard(path: Path, shard: Shard, resolutions: tuple[int, ...], rounds: int, samples: int,
               seed: int) -> tuple[int, float]:
    """Write one shard the way a profile does (a commit per round, then the entry); (rounds, seconds per commit)."""
    rng = np.random.default_rng(seed)
    specs = shard.select(list(get_space("compofa").enumerate(resolutions)))
    commits, spent = 0, 0.0
    with LatencyTable.open(path, writable=True, create=True) as table:
        device = table.device_id("synthetic", FINGERPRINT)
        run = table.start_run(device, {"rounds": rounds}, {"space": "compofa"}, FINGERPRINT, str(shard))
        now = time.time()
        for spec in specs:
            key = EntryKey("compofa", 1.2, str(spec), spec.resolution, 1, "fp32")
            records = []
            for index in range(rounds):
                values = 5.0 * (1 + 0.01 * np.abs(rng.standard_normal(samples)))
                record = RoundRecord(index, now, now + 0.1, tuple(values[:10] * 1.1), tuple(values), 1.0, 0.03, {})
                now += 0.5
                start = time.perf_counter()
                table.add_round(run, device, key, record)
                table.checkpoint()
                spent += time.perf_counter() - start
                commits += 1
                records.append(record)
            measurement = Measurement(spec, tuple(records))
            table.put_entry(device, key, measurement, measurement.estimate, "converged")
        table.finish_run(run)
    return commits, spent / commits


def timed(work: object) -> float:
    start = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, default=5, help="How many of 160, 176, 192, 208, 224.")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    resolutions = (160, 176, 192, 208, 224)[: args.resolutions]
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        first, second, merged = Path(folder, "part1.db"), Path(folder, "part2.db"), Path(folder, "merged.db")
        commits = 0
        per_commit = []
        for index, path in enumerate((first, second), 1):
            count, seconds = fill_shard(path, Shard(index, 2), resolutions, args.rounds, args.samples, index)
            commits += count
            per_commit.append(seconds)
        rows.append(("rounds written, one commit each (goal: <= 5 ms)", f"{commits}: {np.mean(per_commit) * 1e3:.2f} ms each"))
        rows.append(("merge the two shards into a new table (goal: <= 10 s)",
                     f"{timed(lambda: merge_tables(merged, [first, second])):.2f} s"))
        report = merge_tables(merged, [first])
        added = f"{report.runs} runs, {report.rounds} rounds ({report.rounds_present} recognised)"
        rows.append(("merge the first shard again: adds", added))
        rows.append(("... taking (goal: no slower than the merge)", f"{timed(lambda: merge_tables(merged, [first])):.2f} s"))
        size_mb = merged.stat().st_size / 1e6
        with LatencyTable.open(merged) as table:
            entries = len(table.entries())
        rows.append(("merged table", f"{entries} entries, {commits} rounds, {size_mb:.1f} MB"))
        opens = [timed(lambda: LatencyTable.open(merged).close()) for _ in range(5)]
        rows.append(("open with every check, median of 5 (goal: <= 0.2 s)", f"{np.median(opens) * 1e3:.1f} ms"))

        def bare() -> None:
            connection = sqlite3.connect(merged)
            connection.execute("SELECT key, value FROM meta").fetchall()
            connection.close()

        rows.append(("... a bare sqlite3 open and meta read, for comparison",
                     f"{np.median([timed(bare) for _ in range(5)]) * 1e3:.1f} ms"))

        def read_all() -> None:
            with LatencyTable.open(merged) as table:
                table.entries()

        rows.append(("open and read every entry (what search table: does)",
                     f"{np.median([timed(read_all) for _ in range(5)]) * 1e3:.1f} ms"))

        def write_open() -> None:
            with LatencyTable.open(merged, writable=True) as table:
                table.checkpoint(force=True)

        rows.append(("open for writing (lock, checks) and checkpoint",
                     f"{np.median([timed(write_open) for _ in range(5)]) * 1e3:.1f} ms"))
    width = max(len(name) for name, _ in rows)
    print(f"{'step'.ljust(width)}  result")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
