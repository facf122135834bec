"""Output folders claimed by one run and committed as a unit.

A command that writes a folder (``sample``, ``evaluate``, ``calibrate``, ``demo``) opens an
:class:`OutputSet` on it:

1. **Claim** — an exclusive ``flock`` on ``.<name>.lock`` beside the folder. A second run into the same
   folder fails at once with one line naming the first (its pid and command); the kernel drops the
   lock when a run dies, so a killed run never blocks the next one.
2. **Check** — under the lock: a non-empty folder needs ``overwrite``, and then may hold only files the
   command itself writes (``produces``).
3. **Stage** — the run writes its whole set into ``.<name>.stage-<pid>/`` beside the folder.
4. **Commit** — on Linux the stage and the folder are swapped in one atomic ``renameat2(RENAME_EXCHANGE)``
   and the old set (now at the stage's path) is deleted; elsewhere the old folder is renamed to
   ``.<name>.old-<pid>``, the stage to ``<name>``, and the old set deleted (between those two renames
   the folder is briefly absent). A reader sees the old set or the new one, never a mix.

Leftovers of a killed run are recovered on the next claim: an ``old`` set whose folder is missing (a
kill between the renames) is renamed back, and stale stages and old sets are deleted.
``PYFDC_CRASH_AT=<point>`` kills the process at a named point (tests step through every rename).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from pyfdc._io import crash_point

__all__ = ["OutputSet", "OutputFolderError", "check_foreign", "FolderLock"]

LOCK_PREFIX, STAGE_TAG, OLD_TAG = ".", ".stage-", ".old-"


class OutputFolderError(ValueError):
    """An output folder that cannot be used as asked (the CLI reports it in one line, exit 2)."""


def is_debris(name: str) -> bool:
    """A killed atomic write's temp file (``.<name>.<random>.tmp``, :func:`pyfdc._io.atomic_path`)."""
    return name.startswith(".") and name.endswith(".tmp")


def check_foreign(out: Path, produces: Iterable[str] | None, overwrite: bool, what: str = "this command") -> None:
    """Refuse a non-empty ``out`` without ``overwrite``, and with it a folder holding files ``what`` does
    not write (``produces``: names, or shell patterns such as ``model-*.safetensors``)."""
    import fnmatch

    # a killed run's temp files (.<name>.<random>.tmp) are debris, not content
    names = sorted(p.name for p in out.iterdir() if not is_debris(p.name)) if out.is_dir() else []
    if not names:
        return
    if not overwrite:
        raise OutputFolderError(f"--out {out} is not empty; choose a new folder or pass --overwrite")
    if produces is None:
        return
    foreign = [n for n in names if not any(fnmatch.fnmatchcase(n, pat) for pat in produces)]
    if foreign:
        raise OutputFolderError(f"--out {out} holds files {what} does not write ({', '.join(foreign[:5])}); "
                         "--overwrite replaces only a folder of its own outputs")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unavailable,
    and the caller falls back to two renames (``PYFDC_NO_EXCHANGE=1`` forces that, for tests)."""
    if os.environ.get("PYFDC_NO_EXCHANGE") or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False  # e.g. a file system without exchange support: the two-rename path still holds


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """An exclusive claim on folder ``out``: ``flock`` on ``.<name>.lock`` beside it (held until
    :meth:`release` or the process ends, so a killed run never leaves a stale claim)."""

    def __init__(self, out: str | os.PathLike[str], command: str = "pyfdc") -> None:
        self.out = Path(os.path.abspath(out))
        self.path = self.out.parent / f"{LOCK_PREFIX}{self.out.name}.lock"
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the claim; :class:`OutputFolderError` naming the holder when another run has it."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, the rest still holds
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise OutputFolderError(f"--out {self.out} is in use by another run ({holder}); wait for it or choose "
                                    "another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {self.command}".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class OutputSet:
    """Claim ``out`` for one run, stage its files, commit them as a unit (see the module docstring)."""

    def __init__(self, out: str | os.PathLike[str], overwrite: bool, produces: Iterable[str] | None,
                 command: str = "pyfdc") -> None:
        self.out = Path(os.path.abspath(out))   # "." and "runs/x/" name their folder too
        self.overwrite, self.produces, self.command = overwrite, None if produces is None else tuple(produces), command
        self.parent = self.out.parent
        self.lock = FolderLock(self.out, command)
        self.stage = self.parent / f".{self.out.name}{STAGE_TAG}{os.getpid()}"

    # -- claim -------------------------------------------------------------------------------------
    def open(self) -> OutputSet:
        if self.out.exists() and not self.out.is_dir():
            raise OutputFolderError(f"--out {self.out} exists and is not a folder")
        self.lock.acquire()
        try:
            self._recover()
            check_foreign(self.out, self.produces, self.overwrite)
            if self.stage.exists():
                shutil.rmtree(self.stage)
            self.stage.mkdir()
        except BaseException:
            self.close()
            raise
        return self

    def _recover(self) -> None:
        """Undo what a killed run left: restore an old set whose folder is gone; drop stale stages/old sets."""
        prefix = f".{self.out.name}"
        for p in sorted(self.parent.glob(f"{prefix}{OLD_TAG}*")):
            if not self.out.exists():
                os.replace(p, self.out)            # killed between the two renames: the old set comes back
            else:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.parent.glob(f"{prefix}{STAGE_TAG}*"):
            pid = p.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or int(pid) == os.getpid() or not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    # -- commit ------------------------------------------------------------------------------------
    def commit(self) -> Path:
        """Make the staged set the folder's contents; returns ``out``."""
        crash_point("staged")
        if self.out.exists() and _exchange(self.stage, self.out):
            crash_point("exchanged")                 # the stage path now holds the old set
            shutil.rmtree(self.stage, ignore_errors=True)
            return self.out
        old = self.parent / f".{self.out.name}{OLD_TAG}{os.getpid()}"
        had_old = self.out.exists()
        if had_old:
            os.replace(self.out, old)
            crash_point("old-moved")
        os.replace(self.stage, self.out)
        crash_point("new-moved")
        if had_old:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def close(self) -> None:
        """Drop an uncommitted stage and release the claim (also after an error)."""
        if self.stage.exists():
            shutil.rmtree(self.stage, ignore_errors=True)
        self.lock.release()

    def __enter__(self) -> OutputSet:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
