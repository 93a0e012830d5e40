"""Where a process spends its time, by py-spy: sampled stacks, summarised as top functions.

Used where a benchmark misses its target, to show why. py-spy samples from outside (no
instrumentation, so the numbers it watches are not slowed), and with `native` it also sees
inside C extensions: FFmpeg's decoder, oneDNN, the interpreter.
"""

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class Sampler:
    """`py-spy record` on `pid` from `start()` until `stop()`, then the summary."""

    def __init__(self, pid: int, out: Path, native: bool = True, rate: int = 50) -> None:
        exe = Path(sys.executable).with_name("py-spy")
        self.command = [str(exe if exe.exists() else shutil.which("py-spy") or "py-spy")]
        self.command += ["record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
        self.command += ["--rate", str(rate), "--threads", "--subprocesses"]
        self.command += ["--native"] if native else []
        self.out = out
        self.process: subprocess.Popen | None = None

    def start(self) -> "Sampler":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        return self

    def stop(self, top: int = 12) -> dict:
        """Stop sampling; the top functions by own time and by time including callees."""
        if self.process is None:
            return {"error": "not started"}
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, errors = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return {"error": "py-spy did not stop"}
        if not self.out.is_file():
            return {"error": errors.decode(errors="replace")[-500:]}
        return summarize(self.out.read_text(), top)


def _function(frame: str) -> str:
    """`name (file.py:12)` -> `name (file.py)`: lines apart, one function is one entry. A
    native frame without symbols (`0x7f... (libavcodec-1a2b.so.62)`) counts for its library."""
    name, _, where = frame.partition(" (")
    where = where.split(":")[0].rsplit("/", 1)[-1].rstrip(")")
    if name.startswith("0x"):
        return f"{where.split('.so')[0].split('-')[0]} (native)"
    return f"{name} ({where})" if where else name


_WAITS = {
    "EpollSelector.select (selectors.py)",
    "Condition.wait (threading.py)",
    "_worker (thread.py)",
    "Thread._wait_for_tstate_lock (threading.py)",
    "epoll_wait (libc.so.6)",
    "pthread_cond_wait (libc.so.6)",
    "clock_nanosleep (libc.so.6)",
}
"""Leaves of threads that wait (for I/O, a lock, a work item): counted as one `(waiting)`
entry, so the rest reads as where the CPU time went."""


def summarize(collapsed: str, top: int = 12) -> dict:
    """Shares of samples from py-spy's raw (collapsed-stack) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";")]
        samples += n
        # The first entry is the thread ("process 12:thread ..."), not a function.
        own["(waiting)" if frames[-1] in _WAITS else frames[-1]] += n
        for function in set(frames[1:]):
            total[function] += n

    def share(counter: Counter[str]) -> list[list]:
        return [[f, round(c / samples, 3)] for f, c in counter.most_common(top)]

    return {"samples": samples, "own": share(own), "inclusive": share(total)}


def show(summary: dict, lines: int = 8) -> str:
    """The own-time list as text, for the terminal."""
    if "error" in summary:
        return f"  (no profile: {summary['error']})"
    rows = [f"  {share:6.1%}  {name}" for name, share in summary["own"][:lines]]
    return f"  py-spy, {summary['samples']} samples, own time:\n" + "\n".join(rows)
