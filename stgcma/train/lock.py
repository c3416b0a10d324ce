"""One training job per run folder: an advisory ``fcntl.flock`` on ``RUN/.lock`` holding the owner's pid.

The kernel drops a flock when its process ends, however it ends, so a lock left by a killed job
(its pid no longer alive) is simply taken over; the pid in the file only names the owner in the
message a second job fails with. Under torchrun only the main process (the one that writes) locks.
The file is never deleted (deleting it would let two jobs lock two different files of the same
name). Platforms without ``fcntl`` (Windows) run unlocked.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder; the message names its pid."""


class RunLock:
    """Exclusive, non-blocking lock on a run folder; a context manager, released on any exit."""

    def __init__(self, run: str | Path) -> None:
        self.run = Path(run)
        self.path = self.run / LOCK_NAME
        self._fd: int | None = None

    def owner(self) -> int | None:
        """The pid written by the current (or last) holder, if any."""
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def acquire(self) -> RunLock:
        if fcntl is None or self._fd is not None:
            return self
        self.run.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self.owner()
            who = f"pid {owner}" if owner is not None else "another process"
            raise RunLockedError(f"run folder {self.run} is in use by another training job ({who}); wait for it "
                                 "to finish or stop it, or train into another --out") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid left behind for a reader of the file
            fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: forked data workers share this descriptor's lock
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
