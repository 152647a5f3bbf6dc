"""One pipeline run per lakehouse at a time: a second run waits for the first (up to
``concurrency.lock_wait_seconds``), then fails with a message naming the run that holds the lakehouse.

The lock is an advisory ``flock`` on ``<lakehouse>/_lock``: the kernel releases it when its holder exits, however it
exits (a SIGKILLed driver leaves no stale lock). It needs a local (or NFS-style, POSIX-locking) lakehouse; on object
stores (s3a://, abfss://, dbfs:/) the scheduler serialises runs (the Databricks bundle sets max_concurrent_runs: 1)
and Delta's optimistic concurrency with bounded retries (lib/io.py) keeps each table consistent.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)
LOCK_FILE = "_lock"


class LakehouseBusy(RuntimeError):
    """Another run holds the lakehouse lock and did not release it in time."""


def local_folder(root: str) -> Path | None:
    """The local folder of a lakehouse root (a path or file: URI); None for remote filesystems."""
    parsed = urlparse(root)
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(root) if parsed.scheme == "" or len(parsed.scheme) == 1 else None


@contextmanager
def lakehouse_lock(root: str, wait_seconds: float) -> Iterator[None]:
    """Hold the lock of the lakehouse at ``root`` for the duration of the block; wait up to ``wait_seconds`` for
    another holder, then raise LakehouseBusy naming it. A remote lakehouse is not locked (see the module doc)."""
    folder = local_folder(root)
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    with path.open("a+") as handle:
        deadline = time.monotonic() + wait_seconds
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if time.monotonic() >= deadline:
                    raise LakehouseBusy(
                        f"the lakehouse {root} is in use by another run ({holder}); wait for it to finish and run "
                        f"again, or wait longer with DMP_CONCURRENCY__LOCK_WAIT_SECONDS (now {wait_seconds:g})"
                    ) from None
                if not announced:
                    log.warning("waiting up to %gs for the lakehouse lock held by %s", wait_seconds, holder)
                    announced = True
                time.sleep(0.5)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
                                 "command": " ".join(sys.argv)[:200]}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "a run that has just started"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}: {holder.get('command')}"
