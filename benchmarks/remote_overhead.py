"""Profiling through an agent over SSH against profiling locally: wall time and reproducibility.

Goal (issue "Profile any device you can reach"): profiling through `compofa
agent` over SSH on 127.0.0.1 takes <= 1.05x the wall time of the same profile
run locally, and gives the same reproducibility as local runs: a local and a
remote table differ no more than two local tables do (`compofa table diff`).

The benchmark starts a real OpenSSH server on 127.0.0.1 with throwaway keys
(the test suite's `tests/sshd.py`; needs Debian's `openssh-server`), then runs
the same `compofa profile` (ONNX Runtime, 1 thread, the first `--limit`
subnets at 224 px, default precision target) `--pairs` times locally and
remotely, alternating which goes first so the machine's slow drift falls on
both alike, each into a fresh table. The agent's model store starts empty for
the first remote run (so models cross the link once, by hash, inside the
timed run) and stays warm for the later ones, as it would on a real device.
Both sides read the graphs from one export cache, written before any timing.

Run: ``python benchmarks/remote_overhead.py`` (``--limit 24 --pairs 2``;
``--quick`` is 6 subnets, one pair). Prints tables; asserts nothing. Don't run
other work meanwhile: the host and the device share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from sshd import HOST_ALIAS, MISSING, SshServer  # noqa: E402  (the test suite's server, with its fixed keys)

GOAL_RATIO = 1.05


def profile(device: str, table: Path, limit: int, environment: dict[str, str]) -> float:
    """Wall seconds of one `compofa profile` run."""
    command = [sys.executable, "-m", "compofa", "profile", "--device", device, "--table", str(table),
               "--limit", str(limit), "--resolution", "224", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"profile failed ({device}): {done.stderr.strip()}")
    return wall


def diff(first: Path, second: Path, environment: dict[str, str]) -> dict[str, float]:
    """`compofa table diff --json` of two tables (drift-normalized differences)."""
    done = subprocess.run([sys.executable, "-m", "compofa", "table", "diff", str(first), str(second), "--json"],
                          env=environment, capture_output=True, text=True, check=True)
    data: dict[str, float] = json.loads(done.stdout)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=24, help="subnets per profile")
    parser.add_argument("--pairs", type=int, default=2, help="local/remote pairs")
    parser.add_argument("--quick", action="store_true", help="6 subnets, one pair")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.pairs = 6, 1
    if MISSING is not None:
        raise SystemExit(f"cannot run: {MISSING}")
    with tempfile.TemporaryDirectory(prefix="compofa-remote-bench-") as scratch:
        folder = Path(scratch)
        server = SshServer.start(folder / "sshd")
        try:
            cache = folder / "cache"
            environment = {**os.environ, "COMPOFA_CACHE_DIR": str(cache),
                           "COMPOFA_SSH_COMMAND": shlex.join(["ssh", "-F", str(server.ssh_config)])}
            environment.pop("PYTHONDONTWRITEBYTECODE", None)
            python = shlex.join([sys.executable, "-m", "compofa"])
            agent = f"COMPOFA_CACHE_DIR={shlex.quote(str(folder / 'device'))} {python}"
            remote = f"ssh://{HOST_ALIAS}/onnxruntime?agent={quote(agent)}"
            profile("onnxruntime", folder / "warm.db", args.limit, environment)  # exports every graph once
            walls: dict[str, list[float]] = {"local": [], "remote": []}
            tables: dict[str, list[Path]] = {"local": [], "remote": []}
            for pair in range(args.pairs):
                order = ("local", "remote") if pair % 2 == 0 else ("remote", "local")
                for side in order:
                    table = folder / f"{side}{pair}.db"
                    walls[side].append(profile("onnxruntime" if side == "local" else remote, table, args.limit,
                                               environment))
                    tables[side].append(table)
                    print(f"  pair {pair + 1} {side}: {walls[side][-1]:.1f} s", flush=True)
        finally:
            server.stop()
        local, remote_wall = statistics.median(walls["local"]), statistics.median(walls["remote"])
        print(f"\nprofile of {args.limit} subnets at 224 px, ONNX Runtime 1 thread, {args.pairs} pair(s)")
        print(f"{'run':<10}{'median wall s':>15}{'runs':>30}")
        for side in ("local", "remote"):
            runs = ", ".join(f"{w:.1f}" for w in walls[side])
            print(f"{side:<10}{statistics.median(walls[side]):>15.1f}{runs:>30}")
        ratio = remote_wall / local
        print(f"remote / local: {ratio:.3f} (goal <= {GOAL_RATIO}): {'met' if ratio <= GOAL_RATIO else 'missed'}")
        print(f"\n{'table diff':<20}{'matched':>8}{'kendall':>9}{'spearman':>10}{'median |rel diff|':>19}"
              f"{'p90 |rel diff|':>16}")
        comparisons = [("local vs remote", tables["local"][0], tables["remote"][0])]
        if args.pairs > 1:
            comparisons += [("local vs local", tables["local"][0], tables["local"][1]),
                            ("remote vs remote", tables["remote"][0], tables["remote"][1]),
                            ("local vs remote 2", tables["local"][1], tables["remote"][1])]
        for name, first, second in comparisons:
            result = diff(first, second, environment)
            print(f"{name:<20}{result['matched']:>8}{result['kendall_tau']:>9.4f}{result['spearman_rho']:>10.4f}"
                  f"{result['median_abs_rel_diff_normalized']:>19.2%}{result['p90_abs_rel_diff_normalized']:>16.2%}")


if __name__ == "__main__":
    main()
