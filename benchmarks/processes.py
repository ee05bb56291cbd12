"""The processes of the broker benchmark and the machine they run on: machine and commit
facts for the record, CPU and run-queue meters read from /proc, pinning a process to a core,
and the warnings of a worker's log.

Each figure of the benchmark is only as good as what ran beside it on a shared machine, so
the CPU meters also measure the whole machine (load from processes outside the benchmark).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from streams import local


def machine() -> dict:
    out: dict = {"platform": platform.platform(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                out["mem_total_mib"] = round(int(line.split()[1]) / 1024)
    return out


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=local.ROOT,
                              capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=local.ROOT, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def dirty_files() -> list[str]:
    """Tracked files changed since the commit: the code measured is not the commit alone."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=local.ROOT, capture_output=True, text=True, check=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in out.splitlines() if line.strip()]


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, all its threads (None if it is gone)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_broker_pid(bootstrap: str) -> int | None:
    """The pid of a local kafka.Kafka process listening on the bootstrap's port (a broker of
    deploy/kafka/kafka-local.sh on this machine), so its CPU can be measured; else None."""
    port = bootstrap.rsplit(":", 1)[-1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"kafka.Kafka" not in args:
                continue
            props = Path(args[args.index(b"kafka.Kafka") + 1].decode()).read_text()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        for line in props.splitlines():
            if line.startswith("listeners=") and f":{port}," in line + ",":
                return int(entry.name)
    return None


def thread_affinity(pid: int) -> list[str]:
    """The distinct CPU lists the threads of a process may run on (from /proc)."""
    lists = set()
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                    if line.startswith("Cpus_allowed_list:"):
                        lists.add(line.split(":", 1)[1].strip())
    return sorted(lists)


def run_queue_wait_seconds(pid: int | None) -> float | None:
    """Seconds the threads of a process have spent runnable but waiting for a CPU (the sum of
    /proc/PID/task/*/schedstat's second field; threads that have exited are not counted)."""
    if pid is None:
        return None
    total, seen = 0, False
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
                seen = True
    return total / 1e9 if seen else None


def machine_busy_seconds() -> float | None:
    """CPU seconds spent busy (not idle, not waiting on I/O) by the whole machine so far."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds of some processes between two instants, as a share of one core; and of
    the whole machine, so that load from processes outside the benchmark shows."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = {k: v for k, v in pids.items() if v is not None}
        self.start: dict[str, float | None] = {}
        self.t0 = 0.0

    def _sample(self) -> dict[str, float | None]:
        now: dict[str, float | None] = {k: cpu_seconds(p) for k, p in self.pids.items()}
        now["measuring_process"] = time.process_time()
        now["machine"] = machine_busy_seconds()
        for k, p in self.pids.items():
            now["runq:" + k] = run_queue_wait_seconds(p)
        return now

    def begin(self) -> None:
        self.t0 = time.monotonic()
        self.start = self._sample()

    def end(self) -> dict:
        wall = time.monotonic() - self.t0
        now = self._sample()
        out: dict = {"wall_seconds": round(wall, 3)}
        for k, v in now.items():
            s = self.start.get(k)
            if k.startswith("runq:") or v is None or s is None or wall <= 0:
                continue
            out[k] = {"cpu_seconds": round(v - s, 2), "cores_busy": round((v - s) / wall, 3)}
            w0, w1 = self.start.get("runq:" + k), now.get("runq:" + k)
            if w0 is not None and w1 is not None:
                # share of the time one of its threads was runnable but had no CPU
                out[k]["waiting_for_cpu"] = round((w1 - w0) / wall, 3)
        if "machine" in out:
            ours = sum(v["cpu_seconds"] for k, v in out.items()
                       if k not in ("machine", "wall_seconds"))
            out["other_processes_cores_busy"] = round(
                max(0.0, out["machine"]["cpu_seconds"] - ours) / wall, 3)
        return out


def log_warnings(log_path: Path) -> dict:
    """WARNING and ERROR lines of a worker log, counted by their text without numbers."""
    counts: Counter = Counter()
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            for level in ("[WARNING]", "[ERROR]"):
                if level in line:
                    text = line.split(level, 1)[1].strip()
                    counts[level.strip("[]") + " " + re.sub(r"\d+", "N", text)[:90]] += 1
    return dict(counts.most_common(10))


def start_pinned(python_args: list[str], env: dict, log_path: Path,
                 cpu: int) -> subprocess.Popen:
    """`python <python_args>` in the repository, on one CPU (every thread), output to the log."""
    cmd = [sys.executable, *python_args]
    pin = None
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    else:
        def pin() -> None:
            os.sched_setaffinity(0, {cpu})
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env=env, cwd=str(local.ROOT), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=pin)  # noqa: PLW1509 (single-threaded here)


def start_pinned_worker(env: dict, log_path: Path, cpu: int) -> subprocess.Popen:
    """`intentwatch worker` like streams.local.start_worker, on one CPU."""
    return start_pinned(["-m", "streams.cli", "worker"], env, log_path, cpu)
