"""`python -m qexp.tracking.guard CMD ...`: run CMD; end its process group when our parent dies.

A parent killed with SIGKILL (or the OOM killer) runs no cleanup, so an ``mlflow server`` it
started in a group of its own, with its uvicorn workers, would live on. The guard leads that
group and reads its stdin, a pipe whose other end only the parent holds: the kernel closes the
pipe whenever the parent ends, however it ends, and the guard then stops the group (SIGTERM,
then SIGKILL what is left). A parent-death signal (``prctl``) would reach only the guard's own
child, not the uvicorn workers below it; the group reaches them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from qexp.procs import group_members


def _signal_others(sig: int) -> list[int]:
    """Send ``sig`` to every live member of our group but us; the pids it reached."""
    me, sent = os.getpid(), []
    for pid in group_members(os.getpgid(0)):
        if pid != me:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                sent.append(pid)
    return sent


def _end_group(grace_s: float = 10.0) -> None:
    """SIGTERM the rest of the group, SIGKILL what is left after ``grace_s``, then exit."""
    _signal_others(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not [p for p in group_members(os.getpgid(0)) if p != os.getpid()]:
            break
        time.sleep(0.1)
    _signal_others(signal.SIGKILL)
    os._exit(0)  # from the watcher thread: the main thread sits in child.wait()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m qexp.tracking.guard CMD [ARGS...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def watch() -> None:
        with contextlib.suppress(OSError):
            while sys.stdin.buffer.read(4096):
                pass
        _end_group()  # EOF: the parent is gone

    threading.Thread(target=watch, daemon=True).start()
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # a Ctrl-C reaches the whole group; the child decides
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
