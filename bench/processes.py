"""Child processes of the benchmark: pinned to a core, in their own process group, always reaped.

Why a module: every process the benchmark starts (fake upstreams, the gateway, Redis, LiteLLM,
wrk) must die with the run, including on Ctrl-C or an exception half-way, and a process that
spawns workers of its own (uvicorn, LiteLLM) must take them with it. Each child gets its own
session (process group), and ``ProcessGroup.stop_all`` signals the whole group: SIGTERM,
then SIGKILL after a grace period.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
GATEWAY_CORE = "0"
CLIENT_CORE = "1"  # the fake upstreams and the load generator share this one
STOP_GRACE_S = 5.0


PRIORITY_NICE = -10  # when root: the bench's processes outrank whatever else runs on the machine


def pinned(core: str | None, argv: Sequence[str], nice: int | None = None) -> list[str]:
    """``[nice -n N] taskset -c CORE argv...``; no taskset when pinning is off (``core`` None)."""
    prefix = ["nice", "-n", str(nice)] if nice is not None else []
    return [*prefix, *(["taskset", "-c", core] if core is not None else []), *argv]


def set_autogroup_nice(pid: int | str, nice: int) -> bool:
    """Raise a whole session's CPU share (best effort; needs root).

    With ``kernel.sched_autogroup_enabled``, every session is its own scheduling group and a
    process's nice value only ranks it inside that group: against another session's test
    suite, only the group's nice counts (``/proc/<pid>/autogroup``).
    """
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
        return True
    except OSError:
        return False


def default_nice() -> int | None:
    """A raised priority needs root; without it, the bench runs at normal priority."""
    return PRIORITY_NICE if os.geteuid() == 0 else None


def can_pin() -> bool:
    """Pinning needs taskset and cores 0 and 1 in this process's affinity mask."""
    try:
        cores = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        return False
    return {0, 1} <= cores and subprocess.run(["which", "taskset"], capture_output=True).returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def raise_fd_limit() -> None:
    """256 connections in and 256 out need more than the common soft limit of 1,024 descriptors with margin."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - best effort
        pass


def rss_kib(pid: int) -> int:
    """VmRSS of one process, in KiB (what the kernel counts as resident right now)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(match.group(1))


def group_rss_kib(pid: int) -> int:
    """RSS of a process plus its descendants (LiteLLM and uvicorn --workers fork children)."""
    total = rss_kib(pid)
    for child in children_of(pid):
        try:
            total += group_rss_kib(child)
        except (OSError, RuntimeError):
            continue
    return total


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text().split()
            kids.extend(int(k) for k in text)
    except OSError:
        return []
    return kids


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pid: int) -> float:
    """utime + stime of a process plus its live descendants (``serve --workers N``: the workers do the work)."""
    total = process_cpu_or_zero(pid)
    for child in children_of(pid):
        total += group_cpu_seconds(child)
    return total


def core_busy_seconds(core: int) -> float:
    """Seconds one CPU spent busy since boot (user, nice, system, irq, softirq, steal), from /proc/stat."""
    prefix = f"cpu{core} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    raise RuntimeError(f"no {prefix.strip()} in /proc/stat")


def process_cpu_or_zero(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError):
        return 0.0


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    """Every child of the run; ``stop_all`` (called from a ``finally``) reaps them in reverse order."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)
    nice: int | None = None  # applied to each child's session (see set_autogroup_nice)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own process group: stop() takes its workers too
        )
        log.close()
        if self.nice is not None:
            set_autogroup_nice(popen.pid, self.nice)
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child) -> None:
        _stop_group(child.popen)
        if child.popen.stdout is not None:
            child.popen.stdout.close()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)


def _stop_group(popen: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        popen.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        popen.wait(timeout=STOP_GRACE_S)
    # The leader may be gone while members linger (a worker that ignored SIGTERM).
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_ready_line(child: Child, timeout: float) -> int:
    """Read ``READY <port>`` from a child's stdout (bench/upstream.py prints it once listening)."""
    assert child.popen.stdout is not None
    deadline = time.monotonic() + timeout
    fd = child.popen.stdout.fileno()
    os.set_blocking(fd, False)
    buffer = b""
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}")
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            chunk = b""
        buffer += chunk
        match = re.search(rb"READY (\d+)", buffer)
        if match:
            return int(match.group(1))
        time.sleep(0.01)
    raise RuntimeError(f"{child.name} not ready after {timeout:.0f} s:\n{child.log_tail()}")


def http_status(port: int, path: str, *, timeout: float = 1.0) -> int | None:
    """Status of ``GET path`` on 127.0.0.1:port, or None when nothing answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_healthy(child: Child, port: int, path: str, timeout: float, started: float) -> float:
    """Poll ``GET path`` every 5 ms until 200; return seconds since ``started`` (a perf_counter)."""
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if child.popen.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}")
        if http_status(port, path, timeout=0.5) == 200:
            return time.perf_counter() - started
        time.sleep(0.005)
    raise RuntimeError(f"{child.name} not healthy on :{port}{path} after {timeout:.0f} s:\n{child.log_tail()}")


def base_env() -> dict[str, str]:
    """A small, explicit environment for children: nothing from the caller's shell changes what is measured."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the table."""
    print(message, file=sys.stderr, flush=True)
