"""The folder of a local run, claimed before anything else happens."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from components.common.errors import InputError


class RunFolder:
    """`<output-dir>/<run-id>`, claimed before anything else happens.

    Why: two `submit --local --run-id X` started together must not overwrite each other's
    summary and report. `os.mkdir` is atomic: exactly one run creates the folder. A run
    resuming from checkpoints may reuse an existing folder; an exclusive `flock` on
    `<folder>/.lock`, held for the whole run and released by the kernel if the process dies,
    keeps two such runs apart. If the
    checks then fail, `abandon` removes everything the claim created: bad input writes nothing.
    """

    LOCK = ".lock"

    def __init__(self, root: Path, resume: bool) -> None:
        self.root, self.resume = root, resume
        self.created: list[Path] = []
        self.lock: Any = None

    @staticmethod
    def check_location(root: Path, flag: str = "--output-dir") -> None:
        for p in (root, *root.parents):
            if p.exists() and not p.is_dir():
                raise InputError(f"{flag} {root.parent}: {p} is a file, not a folder; give a "
                                 "folder path (it is created if missing)")
            if p.exists():  # the nearest existing folder: the run creates its files there
                if not os.access(p, os.W_OK | os.X_OK):
                    raise InputError(f"{flag} {root.parent}: {p} is read-only for this user; "
                                     "give an --output-dir you can write to")
                break

    def claim(self) -> None:
        import fcntl

        self.check_location(self.root)
        missing, q = [], self.root.parent
        while not q.exists():
            missing.append(q)
            q = q.parent
        for d in reversed(missing):
            try:
                d.mkdir()
                self.created.append(d)
            except FileExistsError:
                pass  # made by a concurrent run: not ours to remove
            except OSError as exc:
                self.abandon()
                raise InputError(f"cannot create {d} ({exc.strerror}); give an --output-dir "
                                 "you can write to") from None
        try:
            os.mkdir(self.root)
            self.created.append(self.root)
        except FileExistsError:
            if not self.root.is_dir() or (any(self.root.iterdir()) and not self.resume):
                self.abandon()
                raise InputError(
                    f"{self.root} already exists (a finished run, or one still running with "
                    "this --run-id); pick another --run-id or remove it (to continue an "
                    f"interrupted one: submit --local --resume {self.root.name})"
                ) from None
        except OSError as exc:  # read-only (EROFS), no permission, a full disk
            self.abandon()
            raise InputError(f"cannot create {self.root} ({exc.strerror}); give an "
                             "--output-dir you can write to") from None
        lock = (self.root / self.LOCK).open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            self.abandon()
            raise InputError(
                f"another submit --local is running in {self.root} right now (it holds "
                f"{self.LOCK}); wait for it to finish or pick another --run-id"
            ) from None
        self.lock = lock

    def abandon(self) -> None:
        """Undo the claim: remove the folders it created (only if still empty)."""
        self.release()
        for d in reversed(self.created):
            with contextlib.suppress(OSError):
                d.rmdir()
        self.created = []

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()  # closing drops the flock
            self.lock = None
            (self.root / self.LOCK).unlink(missing_ok=True)
