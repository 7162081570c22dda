"""`compofa` with the simulated device registered, run as its own process by tests that kill or interrupt it.

``python tests/fake_compofa.py profile --device fake ...``. The table's WAL is
checkpointed every `COMPOFA_TEST_CHECKPOINT_SECONDS` (default 0.2 s) rather
than every 30 s, so a test run of a few seconds shows what a long run keeps
in the table file itself when it is killed.
"""

from __future__ import annotations

import os

import fake_device  # noqa: F401  (registers the "fake" backend)

from compofa.cli import main
from compofa.tables import store

if __name__ == "__main__":
    store.CHECKPOINT_SECONDS = float(os.environ.get("COMPOFA_TEST_CHECKPOINT_SECONDS", "0.2"))
    main()
