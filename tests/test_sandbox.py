"""Each hostile program must fail on its own inside the sandbox while this pytest process carries on."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from coursegpt_assets.scoring import sandbox
from coursegpt_assets.scoring.sandbox import SandboxLimits, SandboxUnavailable, run_sample

pytestmark = pytest.mark.skipif(
    sandbox.sandbox_problem() is not None,
    reason=f"sandbox unavailable: {sandbox.sandbox_problem()} (CI must `apt-get install -y bubblewrap`)",
)

LIMITS = SandboxLimits(timeout_s=3, memory_mb=512)
CGROUP_ROOT = Path("/sys/fs/cgroup/pids")


def _our_cgroups() -> set[str]:
    root = CGROUP_ROOT if CGROUP_ROOT.exists() else Path("/sys/fs/cgroup")
    return {p.name for p in root.glob(f"coursegpt-sandbox-{os.getpid()}-*")}


def _processes_with(marker: str) -> list[str]:
    """Command lines of live processes (zombies excluded) that mention `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


def test_correct_code_passes():
    result = run_sample(
        "def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n", LIMITS
    )
    assert (result.reason, result.passed, result.sandboxed) == ("passed", True, True)


def test_wrong_code_fails_and_names_the_assert():
    result = run_sample(
        "def add(a, b):\n    return a - b\n", "assert add(0, 0) == 0\nassert add(1, 2) == 3\n", LIMITS
    )
    assert result.reason == "failed"
    assert "tests.py:2" in result.detail and "assert add(1, 2) == 3" in result.detail


def test_syntax_error_is_error():
    result = run_sample("def add(a, b)\n    return a + b\n", "assert add(1, 2) == 3\n", LIMITS)
    assert result.reason == "error"
    assert "SyntaxError" in result.detail


def test_early_exit_cannot_pass():
    for code in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"):
        assert run_sample(code, "assert False\n", LIMITS).reason == "failed"


def test_infinite_loop_times_out():
    result = run_sample("while True:\n    pass\n", "assert True\n", LIMITS)
    assert result.reason == "timeout"
    assert result.duration_s < LIMITS.timeout_s + 2


def _unique_sleep() -> str:
    return f"sleep {uuid.uuid4().int % 10**6 + 10**6}"


def test_fork_bomb_is_capped_and_leaves_no_process():
    marker = _unique_sleep()
    # every process that cannot fork any more turns into `sleep <marker>`, visible in the host's /proc
    code = (
        "import os\n"
        "while True:\n"
        "    try:\n        os.fork()\n"
        f"    except OSError:\n        os.execvp('sleep', {marker.split()!r})\n"
    )
    result = run_sample(code, "assert True\n", LIMITS)
    assert result.reason == "limit"
    assert "process limit" in result.detail
    assert _processes_with(marker) == []
    assert _our_cgroups() == set()


def test_detached_child_is_killed_afterwards():
    marker = _unique_sleep()
    code = f"import subprocess\nsubprocess.Popen({marker.split()!r}, start_new_session=True)\n"
    assert run_sample(code, "assert True\n", LIMITS).reason == "passed"
    assert _processes_with(marker) == []


def test_memory_bomb_hits_the_limit():
    bombs = ("x = bytearray(8 * 1024**3)\n", "chunks = []\nwhile True:\n    chunks.append(b' ' * 10**7)\n")
    for code in bombs:
        result = run_sample(code, "assert True\n", LIMITS)
        assert result.reason == "limit", code
    assert run_sample("x = bytearray(64 * 1024**2)\n", "assert len(x) > 0\n", LIMITS).passed


def test_writes_outside_its_folder_fail_and_leave_nothing(tmp_path):
    # the repository is read-only inside (or hidden, when it is checked out under /tmp); the host's /tmp
    # is hidden behind the sample's own tmpfs
    in_repo = Path(__file__).resolve().parent / f".escape-{uuid.uuid4().hex}.txt"
    in_tmp = tmp_path / "escaped.txt"
    hidden = "No such file or directory"
    try:
        for target, errors in ((in_repo, ("Read-only file system", hidden)), (in_tmp, (hidden,))):
            result = run_sample(f"open({str(target)!r}, 'w').write('pwned')\n", "assert True\n", LIMITS)
            assert result.reason == "failed"
            assert any(error in result.detail for error in errors), result.detail
            assert not target.exists()
    finally:
        in_repo.unlink(missing_ok=True)


def test_dev_is_read_only_so_no_sample_can_replace_a_device_for_the_next():
    for code in ("open('/dev/planted', 'w').write('x')\n", "import os\nos.unlink('/dev/null')\n"):
        result = run_sample(code, "assert True\n", LIMITS)
        assert result.reason == "failed" and "Read-only file system" in result.detail, (code, result)


def test_writes_inside_its_folder_work_and_are_capped():
    ok = run_sample(
        "open('notes.txt', 'w').write('hi')\n", "assert open('notes.txt').read() == 'hi'\n", LIMITS
    )
    assert ok.passed
    big = run_sample("open('big.bin', 'wb').write(b'x' * (64 * 1024**2))\n", "assert True\n", LIMITS)
    assert big.reason == "limit"


def test_killing_its_parent_leaves_the_host_alive():
    host_pid = os.getpid()
    code = (
        "import os, signal\n"
        f"assert os.getppid() != {host_pid}\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
        "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
    )
    result = run_sample(code, "assert True\n", LIMITS)
    assert result.reason in {"passed", "failed", "timeout"}
    os.kill(host_pid, 0)  # still here
    assert run_sample("def f():\n    return 1\n", "assert f() == 1\n", LIMITS).passed


def test_environment_secrets_are_invisible(monkeypatch):
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("COURSEGPT_FAKE_API_KEY", secret)
    code = (
        "import os, glob\n"
        "seen = str(dict(os.environ))\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n        seen += open(path, errors='replace').read()\n"
        "    except OSError:\n        pass\n"
    )
    tests = f"assert {secret!r} not in seen\nassert 'COURSEGPT_FAKE_API_KEY' not in seen\n"
    assert run_sample(code, tests, LIMITS).reason == "passed"
    # the same check must fail when the secret is visible, or the test above proves nothing
    leaked = run_sample(f"seen = {secret!r}\n", tests, LIMITS)
    assert leaked.reason == "failed"


def test_network_is_unreachable():
    code = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n"
    result = run_sample(code, "assert True\n", LIMITS)
    assert result.reason == "failed"
    assert "unreachable" in result.detail.lower() or "OSError" in result.detail
    with socket.create_server(("127.0.0.1", 0)) as server:  # a host service the sample must not reach
        port = server.getsockname()[1]
        probe = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        assert socket.create_connection(("127.0.0.1", port), timeout=2)  # reachable from the host
        loopback = run_sample(probe, "assert True\n", LIMITS)
    assert loopback.reason == "failed"
    assert "ConnectionRefused" in loopback.detail


def test_flooding_stdout_hits_the_file_size_limit():
    result = run_sample("while True:\n    print('x' * 10000)\n", "assert True\n", LIMITS)
    assert result.reason == "limit"


def test_missing_sandbox_refuses_unless_opted_in(monkeypatch):
    monkeypatch.setattr(sandbox, "sandbox_problem", lambda: "`bwrap` not found on PATH")
    with pytest.raises(SandboxUnavailable, match="allow_unsandboxed=True"):
        run_sample("x = 1\n", "assert x == 1\n", LIMITS)
    result = run_sample("x = 1\n", "assert x == 1\n", LIMITS, allow_unsandboxed=True)
    assert (result.reason, result.sandboxed) == ("passed", False)
    assert run_sample("while True:\n    pass\n", "", LIMITS, allow_unsandboxed=True).reason == "timeout"


def test_host_can_still_spawn_processes_afterwards():
    assert subprocess.run(["true"], check=False).returncode == 0
