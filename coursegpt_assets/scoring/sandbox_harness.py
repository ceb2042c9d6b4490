"""Runs inside the sandbox (`python -I -B -c <this file's text>`): one solution plus its asserts.

Why a separate harness: the outcome is reported on stdout behind a random token read from stdin,
so a program that exits early (`sys.exit(0)`, `os._exit(0)`) cannot pass as success. Compile
errors are "error", any exception while running is "failed", resource exhaustion is "limit".
Standard library only; it must not import the project.
"""

import errno
import json
import os
import sys
import traceback


def _where(exc: BaseException, sources: dict) -> str:
    """' at tests.py:2: assert f(1) == 2' for the innermost frame in the sample's own code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in sources]
    if not frames:
        return ""
    lines = sources[frames[-1].filename].splitlines()
    text = lines[frames[-1].lineno - 1].strip() if 0 < (frames[-1].lineno or 0) <= len(lines) else ""
    return f" at {frames[-1].filename}:{frames[-1].lineno}: {text}"


def _outcome(payload: dict) -> tuple[str, str]:
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


def main() -> None:
    token = sys.stdin.readline().strip()
    payload = json.loads(sys.stdin.readline())
    sys.stdin.close()
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # input() sees EOF
    sys.stdin = open(0, closefd=False)
    out = os.dup(1)  # survives the sample closing or redirecting stdout
    outcome, detail = _outcome(payload)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    os.write(out, f"\n{token} {json.dumps({'outcome': outcome, 'detail': detail[:600]})}\n".encode())
    os._exit(0)  # skip waiting for threads the sample left running


if __name__ == "__main__":
    main()
