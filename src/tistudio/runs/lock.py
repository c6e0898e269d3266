"""The lock a training process holds on its run folder, so two processes never write one folder.

RUN/.lock is flock()ed for as long as the run trains and holds the owner's pid, host and start time
(for the refusal message). The kernel drops a flock when its process dies, however it dies, so a
lock file left by a killed run is stale by construction: the next run takes it over, and a resume
after kill -9 needs no clean-up. flock (unlike fcntl's POSIX locks) also excludes a second run in
the same process, as the web UI's threads would be."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..errors import TIStudioError


class RunLock:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock, or raise a one-line TIStudioError naming the process that holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise TIStudioError(f"{self.path.parent}: another training is writing this run folder "
                                        f"({self.holder()}); wait for it to end or stop it, or train "
                                        "into another --log-dir") from None
                raise TIStudioError(f"{self.path}: cannot lock the run folder ({exc.strerror}); "
                                    "use a --log-dir on a local disk") from None
            # A releasing owner unlinks the file while still holding it: when ours is no longer the
            # file at that path, we locked a leftover; lock the current one instead.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def holder(self) -> str:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {data['pid']} on {data['host']}, since {data['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that is still starting"

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: see acquire
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
