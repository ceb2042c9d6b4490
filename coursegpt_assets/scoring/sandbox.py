"""Run one untrusted generated Python program (solution + test asserts) in an isolated subprocess.

Why: the code agent's completions are scored by executing them, and a model can emit an infinite
loop, a fork bomb, a memory bomb, file writes, `os.kill` of its parent or an attempt to read secrets.
Each such sample must fail on its own while the host process and other samples stay untouched.

Layers (outermost first):
- a fresh cgroup in the `pids` controller (v1 `/sys/fs/cgroup/pids`, else v2) caps the number of
  tasks, because the kernel ignores RLIMIT_NPROC for root; every pid left in it is killed afterwards;
- `prlimit` sets RLIMIT_AS/CPU/FSIZE/NOFILE/CORE, which do apply to root;
- `bwrap` gives new user/pid/net/ipc/uts namespaces (no network), no capabilities, a read-only view
  of `/` with the home directory hidden, a fresh `/proc` and `/dev`, a size-capped private tmpfs as
  the working directory, a cleared environment and its own session;
- the harness (`sandbox_harness.py`, sent as `python -I -B -c`) reads the program from stdin, runs it and reports the
  outcome on stdout behind a random token, so an early `sys.exit(0)` cannot pass as success. (A
  program written to read the token out of the harness frame could forge a pass: this defends
  against accidents and containment escapes, not against deliberate score cheating.)
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
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

REASONS = ("passed", "failed", "timeout", "error", "limit")
_CGROUP_PREFIX = "coursegpt-sandbox-"
_TAIL_BYTES = 4096

# Delivered with `python -I -B -c` so it runs even where the package directory is hidden.
_HARNESS = Path(__file__).with_name("sandbox_harness.py").read_text(encoding="utf-8")


class SandboxUnavailable(RuntimeError):
    """The isolation this machine needs (bwrap, prlimit, a writable pids cgroup) is missing."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-sample resource limits; `cpu_s` defaults to the timeout rounded up plus one second."""

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


def _pids_cgroup_root() -> Path:
    """The directory under which per-sample pids cgroups are created (v1 first, then v2)."""
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").exists():
        return v1
    v2 = Path("/sys/fs/cgroup")
    controllers = v2 / "cgroup.controllers"
    if controllers.exists() and "pids" in controllers.read_text().split():
        subtree = v2 / "cgroup.subtree_control"
        if "pids" not in subtree.read_text().split():
            subtree.write_text("+pids")
        return v2
    raise SandboxUnavailable(
        "no cgroup pids controller mounted at /sys/fs/cgroup/pids (v1) or /sys/fs/cgroup (v2)"
    )


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why full sandboxing cannot run here (None when it can). Checked once per process."""
    for tool, package in (("bwrap", "bubblewrap"), ("prlimit", "util-linux")):
        if shutil.which(tool) is None:
            return f"`{tool}` not found on PATH: install it (`apt-get install -y {package}`)"
    try:
        root = _pids_cgroup_root()
        probe = root / f"{_CGROUP_PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except (OSError, SandboxUnavailable) as exc:
        return f"cannot create a pids cgroup to cap process counts ({exc}); run as root or delegate a cgroup"
    # the interpreter itself, behind exactly the mounts a sample gets: a hidden venv fails here, once,
    # instead of as an "error" on every sample
    smoke = subprocess.run(
        ["bwrap", *_bwrap_mounts(), *_tmp_mounts(1), "--", sys.executable, "-I", "-B", "-c", "pass"],
        capture_output=True, text=True, timeout=30,
    )
    if smoke.returncode != 0:
        return (f"bwrap cannot start {sys.executable} in the sandbox (rc {smoke.returncode}): "
                f"{smoke.stderr.strip()[:300]}")
    _reap_stale_cgroups(root)
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


def _reap_stale_cgroups(root: Path) -> None:
    """Remove empty cgroups left by crashed processes (their creator pid is gone)."""
    for group in root.glob(f"{_CGROUP_PREFIX}*"):
        match = re.match(rf"{_CGROUP_PREFIX}(\d+)-", group.name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            _kill_cgroup(group)


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


def _tmp_mounts(size_mb: int) -> list[str]:
    """The sample's own size-capped /tmp, with the interpreter re-exposed (a project checked out in /tmp)."""
    return ["--size", str(size_mb * 1024 * 1024), "--tmpfs", "/tmp", *_rebind_under(Path("/tmp"))]


def _bwrap_mounts() -> list[str]:
    """Namespaces and mounts: read-only /, hidden home (interpreter re-exposed), fresh /proc, /dev."""
    args = ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"]
    args += ["--ro-bind", "/", "/"]
    home = Path.home().resolve()
    if home != Path("/"):
        args += ["--tmpfs", str(home), *_rebind_under(home)]
    return args + ["--proc", "/proc", "--dev", "/dev"]


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


def _prlimit_args(limits: SandboxLimits) -> list[str]:
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 1
    return [
        "prlimit",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--cpu={cpu}:{cpu + 1}",
        f"--fsize={limits.file_size_mb * 1024 * 1024}",
        f"--nofile={limits.open_files}",
        "--core=0",
        "--",
    ]


def _command(limits: SandboxLimits, procs_file: Path | None, workdir: str) -> list[str]:
    python = [sys.executable, "-I", "-B", "-c", _HARNESS]
    if procs_file is None:  # explicit opt-in: rlimits only
        return _prlimit_args(limits) + python
    bwrap = ["bwrap", *_bwrap_mounts()]
    bwrap += [*_tmp_mounts(limits.tmpfs_mb), "--chdir", workdir]
    for key, value in _sandbox_env(workdir).items():
        bwrap += ["--setenv", key, value]
    # The shell joins the cgroup before exec'ing prlimit -> bwrap, so every descendant is counted.
    join = 'echo $$ > "$0" && exec "$@"'
    return ["/bin/sh", "-c", join, str(procs_file), *_prlimit_args(limits), *bwrap, "--", *python]


# ---------------------------------------------------------------- cgroup


def _new_cgroup(max_pids: int) -> Path:
    group = _pids_cgroup_root() / f"{_CGROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    group.mkdir()
    (group / "pids.max").write_text(str(max_pids))
    return group


def _cgroup_hit_limit(group: Path) -> bool:
    events = group / "pids.events"
    if not events.exists():
        return False
    counts = dict(line.split() for line in events.read_text().splitlines() if line.strip())
    return int(counts.get("max", "0")) > 0


def _kill_cgroup_members(group: Path) -> int:
    """Stop new forks (pids.max=0) and SIGKILL current members; returns how many were signalled."""
    try:
        (group / "pids.max").write_text("0")
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def _kill_cgroup(group: Path, attempts: int = 200) -> None:
    """Kill every member until the cgroup is empty, then remove it."""
    for _ in range(attempts):
        if not group.exists():
            return
        if _kill_cgroup_members(group) == 0:
            try:
                group.rmdir()
                return
            except OSError:  # members still exiting
                pass
        time.sleep(0.01)
    raise RuntimeError(f"sandbox cgroup {group} still has processes after {attempts} kill rounds")


# ---------------------------------------------------------------- run


def _tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - _TAIL_BYTES))
        return handle.read().decode("utf-8", "replace")


def _read_marker(stdout_tail: str, token: str) -> dict | None:
    for line in reversed(stdout_tail.splitlines()):
        if line.startswith(token + " "):
            try:
                return json.loads(line[len(token) + 1 :])
            except json.JSONDecodeError:
                return None
    return None


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
    signum = rc - 128 if rc is not None and rc > 128 else (-rc if rc is not None and rc < 0 else 0)
    if signum in (signal.SIGXCPU, signal.SIGXFSZ):
        return "limit", f"killed by {signal.Signals(signum).name} (CPU time or file size limit)"
    if "MemoryError" in stderr:
        return "limit", "MemoryError: memory limit reached"
    if stderr.lstrip().startswith("bwrap:"):
        return "error", f"sandbox failed to start: {stderr.strip()[:300]}"
    return "failed", f"program ended (rc {rc}) without finishing its tests"


def run_sample(
    code: str, tests: str, limits: SandboxLimits | None = None, *, allow_unsandboxed: bool = False
) -> SandboxResult:
    """Execute `code` then the assert statements in `tests` in a fresh sandbox; never raises for
    anything the sample does. Raises SandboxUnavailable unless isolation works or is waived."""
    limits = limits or SandboxLimits()
    sandboxed = sandbox_problem() is None
    if not sandboxed and not allow_unsandboxed:
        require_sandbox()
    token = secrets.token_hex(16)
    payload = f"{token}\n{json.dumps({'code': code, 'tests': tests})}\n".encode()
    host_dir = Path(tempfile.mkdtemp(prefix="coursegpt-sample-"))
    group = _new_cgroup(limits.max_pids) if sandboxed else None
    workdir = "/tmp" if sandboxed else str(host_dir / "work")
    started = time.monotonic()
    try:
        if not sandboxed:
            os.mkdir(workdir)
        with (host_dir / "stdout").open("wb") as out, (host_dir / "stderr").open("wb") as err:
            proc = subprocess.Popen(
                _command(limits, group / "cgroup.procs" if group else None, workdir),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=_sandbox_env(workdir),
                start_new_session=True,
            )
            # A timer thread enforces the timeout so the wait below blocks in waitpid instead of
            # polling (Popen.wait(timeout) sleeps up to 50 ms between polls).
            stopper = _Stopper(proc, group)
            timer = threading.Timer(limits.timeout_s, stopper.stop, kwargs={"timed_out": True})
            timer.start()
            try:
                proc.communicate(payload)
            except BrokenPipeError:  # sandbox died before reading its input
                pass
            finally:
                timer.cancel()
                stopper.stop()
                proc.wait()
        duration = time.monotonic() - started
        stderr = _tail(host_dir / "stderr")
        marker = _read_marker(_tail(host_dir / "stdout"), token)
        cap = limits.file_size_mb * 1024 * 1024
        output_full = any((host_dir / name).stat().st_size >= cap for name in ("stdout", "stderr"))
        reason, detail = _classify(
            proc.returncode, stopper.timed_out, stopper.hit_pids, output_full, marker, stderr
        )
        return SandboxResult(reason, detail, proc.returncode, round(duration, 4), sandboxed, stderr[-800:])
    finally:
        if group is not None:
            _kill_cgroup(group)
        shutil.rmtree(host_dir, ignore_errors=True)


class _Stopper:
    """Stops a sample once, from the timeout timer or after it exits: records whether it hit the
    process cap (before pids.max=0 makes stragglers' forks fail too), then kills everything."""

    def __init__(self, proc: subprocess.Popen, group: Path | None):
        self.proc, self.group = proc, group
        self.lock = threading.Lock()
        self.timed_out = False
        self.hit_pids: bool | None = None

    def stop(self, timed_out: bool = False) -> None:
        with self.lock:
            if self.hit_pids is not None:
                return
            self.timed_out = timed_out
            self.hit_pids = self.group is not None and _cgroup_hit_limit(self.group)
            if self.group is not None:
                _kill_cgroup_members(self.group)
            _kill_session(self.proc)


def _kill_session(proc: subprocess.Popen) -> None:
    """Kill the sample's session (unsandboxed mode relies on this; sandboxed it is a no-op)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
