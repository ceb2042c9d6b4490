"""Run untrusted generated Python programs (solution + test asserts) in isolated processes.

Why: the code agent's completions are scored by executing them, and a model can emit an infinite
loop, a fork bomb, a memory bomb, file writes, `os.kill` of its parent or an attempt to read secrets.
Each such sample must fail on its own while the host process and other samples stay untouched.

Layers (outermost first):
- `bwrap` gives new user/pid/net/ipc/uts namespaces (no network), no capabilities, a read-only view
  of `/` with the home directory hidden, a fresh `/proc`, a read-only `/dev`, size-capped private
  tmpfs at `/tmp` and `/dev/shm`, a cleared environment and its own session;
- inside it, a server (`sandbox_harness.py`, sent as `python -I -B -c`) forks one process per
  sample: a `SandboxSession` keeps that sandbox for many samples, because starting bwrap and an
  interpreter per sample doubled the cost of scoring a benchmark;
- each sample's process joins a pids cgroup of its own (the kernel ignores RLIMIT_NPROC for root)
  whose members are all killed when the sample ends, sets RLIMIT_AS/CPU/FSIZE/NOFILE/CORE, finds
  /tmp and /dev/shm emptied, and has its own wall-clock timeout enforced from the host;
- the outcome comes back on a pipe of its own, so an early `sys.exit(0)` cannot pass as success.
  (A program written to forge that message could fake a pass: this defends against accidents and
  containment escapes, not against deliberate score cheating.) A sample that kills, stops or
  re-prioritises the server only fails itself: the host starts a fresh sandbox for the next one.
"""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from coursegpt_assets.scoring import sandbox_cgroup as cgroups

REASONS = ("passed", "failed", "timeout", "error", "limit")
_START_S = 60  # an interpreter start on a loaded machine
_GRACE_S = 1  # after a timeout kill, how long the server may take to report before it is replaced

# Delivered with `python -I -B -c` so it runs even where the package directory is hidden.
_HARNESS = Path(__file__).with_name("sandbox_harness.py").read_text(encoding="utf-8")


class SandboxUnavailable(RuntimeError):
    """The isolation this machine needs (bwrap, a writable pids cgroup) is missing."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-sample resource limits; `cpu_s` defaults to the timeout rounded up plus one second;
    `tmpfs_mb` caps each of the sandbox's /tmp and /dev/shm."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    cpu_s: int | None = None
    file_size_mb: int = 16
    open_files: int = 128
    max_pids: int = 32
    tmpfs_mb: int = 64


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sample. `reason` is one of REASONS."""

    reason: str
    detail: str
    returncode: int | None
    duration_s: float
    sandboxed: bool
    stderr_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.reason == "passed"


# ---------------------------------------------------------------- availability


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why full sandboxing cannot run here (None when it can). Checked once per process."""
    if shutil.which("bwrap") is None:
        return "`bwrap` not found on PATH: install it (`apt-get install -y bubblewrap`)"
    try:
        root = cgroups.pids_root()
        probe = root / f"{cgroups.PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except (OSError, cgroups.CgroupUnavailable) as exc:
        return f"cannot create a pids cgroup to cap process counts ({exc}); run as root or delegate a cgroup"
    # the interpreter itself, behind exactly the mounts a sample gets: a hidden venv fails here, once,
    # instead of as an "error" on every sample
    smoke = subprocess.run(
        ["bwrap", *_bwrap_mounts(1), "--", sys.executable, "-I", "-B", "-c", "pass"],
        capture_output=True, text=True, timeout=30,
    )
    if smoke.returncode != 0:
        return (f"bwrap cannot start {sys.executable} in the sandbox (rc {smoke.returncode}): "
                f"{smoke.stderr.strip()[:300]}")
    cgroups.reap_stale(root)
    return None


def require_sandbox() -> None:
    """Raise SandboxUnavailable with an actionable message when isolation is missing."""
    problem = sandbox_problem()
    if problem:
        raise SandboxUnavailable(
            f"cannot sandbox generated code: {problem}. Refusing to run it unsandboxed; pass "
            "allow_unsandboxed=True only on a throwaway machine (rlimits and timeouts still apply, "
            "but no namespaces, read-only filesystem or process cap)."
        )


# ---------------------------------------------------------------- command line


def _interpreter_paths() -> set[Path]:
    """The folders the sample's interpreter needs: the venv, its base installation, the real executable."""
    needed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    needed.add(Path(sys.executable).resolve().parent.parent)
    needed.add(Path(sys.executable).absolute().parent.parent)  # a venv's bin/python symlink itself
    return needed


def _rebind_under(hidden: Path) -> list[str]:
    """Read-only binds re-exposing interpreter folders that a tmpfs over `hidden` would hide."""
    args = []
    for path in sorted(p for p in _interpreter_paths() if hidden in p.parents):
        args += ["--ro-bind", str(path), str(path)]
    return args


def _bwrap_mounts(tmpfs_mb: int) -> list[str]:
    """Namespaces and mounts: read-only / and /dev, hidden home (interpreter re-exposed), fresh /proc,
    size-capped tmpfs at /tmp and /dev/shm (the only writable places, emptied between samples)."""
    args = ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"]
    args += ["--ro-bind", "/", "/"]
    home = Path.home().resolve()
    if home != Path("/"):
        args += ["--tmpfs", str(home), *_rebind_under(home)]
    size = ["--size", str(tmpfs_mb * 1024 * 1024)]
    args += ["--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    return args + [*size, "--tmpfs", "/tmp", *_rebind_under(Path("/tmp"))]


def _sandbox_env(workdir: str) -> dict[str, str]:
    """The only environment a sample sees: nothing inherited from the host."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",  # per-thread malloc arenas would eat RLIMIT_AS address space
    }


def _rlimits(limits: SandboxLimits) -> dict[str, tuple[int, int]]:
    """What each sample's process sets on itself right after the fork (these do apply to root)."""
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 1
    memory, fsize = limits.memory_mb * 1024 * 1024, limits.file_size_mb * 1024 * 1024
    return {
        "RLIMIT_AS": (memory, memory),
        "RLIMIT_CPU": (cpu, cpu + 1),
        "RLIMIT_FSIZE": (fsize, fsize),
        "RLIMIT_NOFILE": (limits.open_files, limits.open_files),
        "RLIMIT_CORE": (0, 0),
    }


def _server_command(limits: SandboxLimits, server_procs: Path | None, settings: dict) -> list[str]:
    python = [sys.executable, "-I", "-B", "-c", _HARNESS, json.dumps(settings)]
    if server_procs is None:  # explicit opt-in: rlimits and timeouts only
        return python
    bwrap = ["bwrap", *_bwrap_mounts(limits.tmpfs_mb), "--chdir", "/tmp"]
    for key, value in _sandbox_env("/tmp").items():
        bwrap += ["--setenv", key, value]
    # The shell joins the server's cgroup before exec'ing bwrap, so the whole sandbox is counted.
    join = 'echo $$ > "$0" && exec "$@"'
    return ["/bin/sh", "-c", join, str(server_procs), *bwrap, "--", *python]


# ---------------------------------------------------------------- run


def _classify(
    rc: int | None, timed_out: bool, hit_pids: bool, output_full: bool, marker: dict | None, stderr: str
) -> tuple[str, str]:
    if hit_pids and (marker or {}).get("outcome") != "passed":
        return "limit", "process limit reached (fork bomb or too many threads)"
    if output_full and not marker:
        return "limit", "stdout/stderr reached the file size limit"
    if marker and marker.get("outcome") in REASONS:  # the harness finished (it exits right after)
        return marker["outcome"], marker.get("detail", "")
    if timed_out:
        return "timeout", "wall-clock timeout"
    signum = -rc if rc is not None and rc < 0 else 0
    if signum in (signal.SIGXCPU, signal.SIGXFSZ):
        return "limit", f"killed by {signal.Signals(signum).name} (CPU time or file size limit)"
    if "MemoryError" in stderr:
        return "limit", "MemoryError: memory limit reached"
    return "failed", f"program ended (rc {rc}) without finishing its tests"


class SandboxSession:
    """One sandbox that runs samples one after another, each in its own process with its own limits,
    pids cgroup, emptied /tmp and per-sample timeout. Use from one thread at a time (bwrap dies with
    the thread that started it); `SandboxPool` gives each thread its own."""

    def __init__(self, limits: SandboxLimits | None = None, *, allow_unsandboxed: bool = False):
        self.limits = limits or SandboxLimits()
        self.sandboxed = sandbox_problem() is None
        if not self.sandboxed and not allow_unsandboxed:
            require_sandbox()
        self._proc: subprocess.Popen | None = None
        self._groups: tuple[Path, Path] | None = None  # (server, sample)
        self._folder: str | None = None  # unsandboxed: the host folder samples get instead of /tmp
        self._buffer = b""

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _start(self) -> str | None:
        """Start the server; returns why it could not start (None when it is ready)."""
        settings: dict = {"cgroup_fd": -1, "limits": _rlimits(self.limits), "wipe": ["/tmp", "/dev/shm"]}
        server_procs, pass_fds = None, ()
        if self.sandboxed:
            self._groups = (cgroups.new_cgroup(16), cgroups.new_cgroup(self.limits.max_pids, "-sample"))
            settings["cgroup_fd"] = os.open(self._groups[1] / "cgroup.procs", os.O_WRONLY)
            server_procs, pass_fds = self._groups[0] / "cgroup.procs", (settings["cgroup_fd"],)
        else:
            self._folder = tempfile.mkdtemp(prefix="coursegpt-samples-")
            settings["wipe"] = [self._folder]
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                _server_command(self.limits, server_procs, settings),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, pass_fds=pass_fds,
                cwd=self._folder or "/", env=_sandbox_env(self._folder or "/tmp"), start_new_session=True,
            )
        finally:
            if pass_fds:
                os.close(settings["cgroup_fd"])
        reply, _ = self._read_reply(time.monotonic() + _START_S)
        if reply == {"ready": True}:
            return None
        self._stderr.seek(0)
        why = self._stderr.read()[-600:].decode("utf-8", "replace").strip()
        self.close()
        return f"sandbox failed to start: {why or 'no reply from its server'}"

    def _read_reply(self, deadline: float) -> tuple[dict | None, bool]:
        """(the server's next reply line, or None at the deadline or end of output; whether it ended)."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None, False
            chunk = os.read(fd, 65536)
            if not chunk:
                return None, True
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line), False
        except ValueError:
            return None, True

    def _stop_sample(self, pid: int | None) -> None:
        """Kill whatever the sample left running: its cgroup (sandboxed) or its process group."""
        if self._groups is not None:
            cgroups.empty_cgroup(self._groups[1], rearm=self.limits.max_pids)
        elif pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def run(self, code: str, tests: str) -> SandboxResult:
        """Execute `code` then the asserts in `tests`; never raises for anything the sample does."""
        for _attempt in range(2):  # a restart request means the previous sample tampered with the server
            if self._proc is None and (why := self._start()):
                return SandboxResult("error", why, None, 0.0, self.sandboxed)
            result = self._run_once(code, tests)
            if result is not None:
                return result
            self.close()
        return SandboxResult("error", "a fresh sandbox asked for a restart", None, 0.0, self.sandboxed)

    def _run_once(self, code: str, tests: str) -> SandboxResult | None:
        assert self._proc is not None and self._proc.stdin is not None
        sample_group = self._groups[1] if self._groups else None
        hits_before = cgroups.limit_hits(sample_group) if sample_group else 0
        started = time.monotonic()
        try:
            self._proc.stdin.write(json.dumps({"code": code, "tests": tests}).encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:  # the previous sample killed the server after it replied
            return None
        reply, ended = self._read_reply(started + self.limits.timeout_s)
        pid = None
        if reply is not None and "pid" in reply:  # unsandboxed: the sample's process group
            pid = reply["pid"]
            reply, ended = self._read_reply(started + self.limits.timeout_s)
        timed_out = reply is None and not ended
        hit_pids = sample_group is not None and cgroups.limit_hits(sample_group) > hits_before
        if timed_out and not self.sandboxed and pid is None:
            self.close()  # the server never named the sample's process: replace the server with it
        # unsandboxed, the server ends the group itself once the sample exits (before reaping it, so
        # the pid cannot have been reused); the host only does so for a sample still running
        self._stop_sample(pid if timed_out else None)
        if timed_out and self._proc is not None:
            reply, ended = self._read_reply(time.monotonic() + _GRACE_S)
        duration = round(time.monotonic() - started, 4)
        if reply is not None and "restart" in reply:
            return None
        if reply is None:  # the sample killed or stopped its server: it alone fails; a fresh one follows
            self.close()
            reason = "timeout" if timed_out else ("limit" if hit_pids else "failed")
            return SandboxResult(reason, "wall-clock timeout" if timed_out else
                                 "the sample ended its sandbox before finishing its tests",
                                 None, duration, self.sandboxed)
        reason, detail = _classify(reply["rc"], timed_out, hit_pids, reply["output_full"], reply["marker"],
                                   reply["stderr"])
        return SandboxResult(reason, detail, reply["rc"], duration, self.sandboxed, reply["stderr"][-800:])

    def close(self) -> None:
        """Stop the server and everything in the sandbox; the next `run` starts a fresh one."""
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            _kill_session(self._proc)
            self._proc.wait()
            self._stderr.close()
            self._proc, self._buffer = None, b""
        if self._groups is not None:
            for group in self._groups:
                cgroups.empty_cgroup(group)
            self._groups = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


class SandboxPool:
    """Thread-safe `run` for a thread pool: each calling thread gets a `SandboxSession` of its own."""

    def __init__(self, limits: SandboxLimits | None = None, *, allow_unsandboxed: bool = False):
        self.limits, self.allow_unsandboxed = limits or SandboxLimits(), allow_unsandboxed
        self._local = threading.local()
        self._sessions: list[SandboxSession] = []
        self._lock = threading.Lock()

    def run(self, code: str, tests: str) -> SandboxResult:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = SandboxSession(self.limits, allow_unsandboxed=self.allow_unsandboxed)
            with self._lock:
                self._sessions.append(session)
        return session.run(code, tests)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *_exc) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


def run_sample(
    code: str, tests: str, limits: SandboxLimits | None = None, *, allow_unsandboxed: bool = False
) -> SandboxResult:
    """Execute `code` then the assert statements in `tests` in a fresh sandbox of its own; never raises
    for anything the sample does. Raises SandboxUnavailable unless isolation works or is waived."""
    with SandboxSession(limits, allow_unsandboxed=allow_unsandboxed) as session:
        return session.run(code, tests)


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the server's whole session (bwrap, or the unsandboxed server and its samples)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
