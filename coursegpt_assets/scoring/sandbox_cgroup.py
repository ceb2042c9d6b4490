"""The pids cgroups that cap how many processes a sandboxed sample may start.

Why cgroups: the kernel ignores RLIMIT_NPROC for root, so a fork bomb is stopped by a cgroup's
`pids.max` instead; killing every member of the cgroup afterwards also catches children that
detached themselves. Each sandbox has two: one for the sandbox's own server and one that every
sample joins in turn (emptied and re-armed between samples).
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

PREFIX = "coursegpt-sandbox-"


class CgroupUnavailable(RuntimeError):
    """No pids controller is mounted where this module looks for one."""


def pids_root() -> Path:
    """The directory under which pids cgroups are created (v1 first, then v2)."""
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
    raise CgroupUnavailable(
        "no cgroup pids controller mounted at /sys/fs/cgroup/pids (v1) or /sys/fs/cgroup (v2)"
    )


def new_cgroup(max_pids: int, suffix: str = "") -> Path:
    """A fresh cgroup named after this process (so a later run can reap it if this one crashes)."""
    group = pids_root() / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"
    group.mkdir()
    (group / "pids.max").write_text(str(max_pids))
    return group


def limit_hits(group: Path) -> int:
    """How many forks the cgroup's `pids.max` has refused so far (a running count)."""
    events = group / "pids.events"
    if not events.exists():
        return 0
    counts = dict(line.split() for line in events.read_text().splitlines() if line.strip())
    return int(counts.get("max", "0"))


def _kill_members(group: Path) -> int:
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


def empty_cgroup(group: Path, rearm: int | None = None, attempts: int = 200) -> None:
    """Kill members until none is left; then set `pids.max` to `rearm` (or remove the cgroup if None)."""
    for _ in range(attempts):
        if not group.exists():
            return
        if _kill_members(group) == 0:
            try:
                if rearm is None:
                    group.rmdir()
                else:
                    (group / "pids.max").write_text(str(rearm))
                return
            except OSError:  # members still exiting
                pass
        time.sleep(0.01)
    raise RuntimeError(f"sandbox cgroup {group} still has processes after {attempts} kill rounds")


def reap_stale(root: Path) -> None:
    """Remove cgroups left by crashed processes (their creator pid is gone)."""
    for group in root.glob(f"{PREFIX}*"):
        match = re.match(rf"{PREFIX}(\d+)-", group.name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            empty_cgroup(group)
