"""The local Dagster instance's `dagster.yaml`, written on first use.

Dagster's multiprocess executor prints a DEBUG `STEP_WORKER_STARTED` line per step through a console
logger whose level only `python_logs.python_log_level` sets. INFO drops those lines and nothing else
this project logs: Dagster events are stored whatever their level, and every `context.log` call here
is info or above.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_DAGSTER_YAML = """\
# Written by coursegpt for the local instance; edit freely, it is never rewritten once it has content.
python_logs:
  python_log_level: INFO
"""


def ensure_dagster_yaml(dagster_home: Path) -> Path:
    """Create `dagster_home/dagster.yaml` if it is missing or empty (an empty one is what earlier
    versions left); a file with content is the user's and stays as it is."""
    path = dagster_home / "dagster.yaml"
    if path.is_file() and path.stat().st_size:
        return path
    dagster_home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dagster.yaml.", dir=dagster_home)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(DEFAULT_DAGSTER_YAML)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
