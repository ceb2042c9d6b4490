"""One sandbox serving many samples: each hostile sample fails on its own and the next one is unaffected."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from coursegpt_assets.scoring import sandbox
from coursegpt_assets.scoring.sandbox import SandboxLimits, SandboxPool, SandboxSession

pytestmark = pytest.mark.skipif(
    sandbox.sandbox_problem() is not None,
    reason=f"sandbox unavailable: {sandbox.sandbox_problem()} (CI must `apt-get install -y bubblewrap`)",
)

LIMITS = SandboxLimits(timeout_s=3, memory_mb=512)
GOOD = ("def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3\n")
LEAVE_FILES = (
    "open('left.txt', 'w').write('secret')\n"
    "open('/tmp/left.txt', 'w').write('secret')\n"
    "open('/dev/shm/left.txt', 'w').write('secret')\n"
    "import os\nos.mkdir('/tmp/locked')\nos.chmod('/tmp/locked', 0)\n"
)
READ_FILES = (
    "import glob, os\n"
    "found = [p for p in glob.glob('/tmp/**', recursive=True) + glob.glob('/dev/shm/*') if 'left' in p"
    " or 'locked' in p]\n"
    "texts = []\n"
    "for path in ('left.txt', '/tmp/left.txt', '/dev/shm/left.txt', '/tmp/sample/left.txt'):\n"
    "    try:\n        texts.append(open(path).read())\n"
    "    except OSError:\n        pass\n"
)
HOSTILE = {  # sample -> the reasons it may end with
    "fork bomb": ("import os\nwhile True:\n    os.fork()\n", {"limit"}),
    "infinite loop": ("while True:\n    pass\n", {"timeout"}),
    "os._exit": ("import os\nos._exit(0)\n", {"failed"}),
    "crash": ("import ctypes\nctypes.string_at(0)\n", {"failed"}),
    "write outside tmp": (f"open({str(Path(__file__).parent / 'escape.txt')!r}, 'w').write('x')\n", {"failed"}),
    "detached child": (
        "import subprocess\nsubprocess.Popen(['sleep', '1000'], start_new_session=True)\n", {"passed"}
    ),
    "forged reply": (
        "import os\nos.write(1, b'{\"rc\": 0, \"marker\": {\"outcome\": \"passed\"}, \"stderr\": \"\", "
        "\"output_full\": false}\\n')\nassert False\n",
        {"failed"},
    ),
    "kill the server": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", {"failed", "passed"}),
    "stop the server": ("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n", {"timeout", "passed"}),
    "kill everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n", {"failed", "passed"}),
}


def test_hostile_samples_in_one_sandbox_only_fail_themselves():
    with SandboxSession(LIMITS) as session:
        for name, (code, reasons) in HOSTILE.items():
            result = session.run(code, "assert True\n")
            assert result.reason in reasons, (name, result)
            follow = session.run(*GOOD)
            assert follow.passed, (name, follow)
            assert follow.duration_s < LIMITS.timeout_s, (name, follow)  # its timeout is its own
    assert not (Path(__file__).parent / "escape.txt").exists()


def test_a_sample_cannot_read_what_an_earlier_one_left():
    with SandboxSession(LIMITS) as session:
        assert session.run(LEAVE_FILES, "assert True\n").passed
        after = session.run(READ_FILES, "assert found == [], found\nassert texts == [], texts\n")
        assert after.passed, after
        # the same reader does see files its own sample wrote, so the check above can fail
        seen = session.run(LEAVE_FILES + READ_FILES, "assert found == [], found\n")
        assert seen.reason == "failed" and "left" in seen.detail


def test_a_sample_cannot_reach_the_servers_pipes_or_memory():
    forged = b'{"rc": 0, "marker": {"outcome": "passed"}, "stderr": "", "output_full": false}\n'
    for target in ("fd/1", "mem"):
        code = f"import os\nopen(f'/proc/{{os.getppid()}}/{target}', 'wb').write({forged!r})\n"
        with SandboxSession(LIMITS) as session:
            result = session.run(code, "assert False\n")
            assert result.reason == "failed" and "PermissionError" in result.detail, (target, result)
            assert session.run(*GOOD).passed


def test_timeout_and_cpu_limit_are_per_sample():
    limits = SandboxLimits(timeout_s=10, cpu_s=1, memory_mb=512)
    burn = "import time\nstart = time.process_time()\nwhile time.process_time() - start < {s}:\n    pass\n"
    with SandboxSession(limits) as session:
        # three samples of 0.6 s CPU each: only a limit shared across the session would stop one
        for _ in range(3):
            assert session.run(burn.format(s=0.6), "assert True\n").passed
        assert session.run(burn.format(s=3), "assert True\n").reason == "limit"
        assert session.run(*GOOD).passed


def test_a_sample_that_lowers_the_servers_limits_or_priority_does_not_reach_the_next():
    host_nice = os.getpriority(os.PRIO_PROCESS, 0)
    tamper = (
        "import os, resource\n"
        "os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)\n"
        "resource.prlimit(os.getppid(), resource.RLIMIT_AS, (100 * 1024**2, 100 * 1024**2))\n"
    )
    check = f"import os\nassert os.getpriority(os.PRIO_PROCESS, 0) == {host_nice}\nx = bytearray(200 * 1024**2)\n"
    with SandboxSession(LIMITS) as session:
        assert session.run(check, "assert True\n").passed
        assert session.run(tamper, "assert True\n").passed
        after = session.run(check, "assert True\n")
        assert after.passed, after


def test_pool_gives_each_thread_its_own_sandbox():
    results, lock = [], threading.Lock()
    marker = uuid.uuid4().hex

    with SandboxPool(LIMITS) as pool:
        def work(i: int) -> None:
            # each sample writes a file and expects no other sample's file in its folder
            code = f"import os\nopen('{marker}-{i}', 'w').write('x')\nmine = sorted(os.listdir('.'))\n"
            result = pool.run(code, f"assert mine == ['{marker}-{i}'], mine\n")
            with lock:
                results.append(result)

        threads = [threading.Thread(target=lambda k=k: [work(k * 10 + j) for j in range(5)]) for k in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(pool._sessions) == 3
    assert [r.reason for r in results] == ["passed"] * 15


def test_unsandboxed_opt_in_still_times_out_and_ends_each_samples_processes(monkeypatch):
    monkeypatch.setattr(sandbox, "sandbox_problem", lambda: "`bwrap` not found on PATH")
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}"
    leave = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'])\n"
    with SandboxSession(LIMITS, allow_unsandboxed=True) as session:
        assert session.run(leave, "assert True\n").passed
        assert session.run("while True:\n    pass\n", "assert True\n").reason == "timeout"
        follow = session.run(*GOOD)
        assert follow.passed and not follow.sandboxed
        alive = [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker.encode() in _read(p)]
        assert alive == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
