"""The local Dagster instance's `dagster.yaml`, written on first use.

Dagster's multiprocess executor prints a DEBUG `STEP_WORKER_STARTED` line per step through a console
logger whose level only `python_logs.python_log_level` sets. INFO drops those lines and nothing else
this project logs: Dagster events are stored whatever their level, and every `context.log` call here
is info or above.

On a machine with an NVIDIA GPU, `concurrency: pools: default_limit: 1` gives the `gpu` pool (tuning_job's
local training, evaluation_report's local generation; the project's only pool) one slot: a second
training or generation, of this run or another, waits for the first to end instead of sharing the GPU.
The multiprocess executor claims the slot per step, so it holds for `coursegpt run` (dg.execute_job) as
for runs the UI launches. A CPU-only machine gets no limit: there is no GPU to share, and serialising
the tiny smoke trainings made `make run` about a quarter slower on 2 cores. With several GPUs raise it:
`dagster instance concurrency set gpu <n>`.
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
GPU_POOL_YAML = """\
# one step at a time in each pool: the `gpu` pool (local training and generation) gets the one GPU
concurrency:
  pools:
    default_limit: 1
"""


def cuda_gpu_present() -> bool:
    """Whether the NVIDIA driver exposes a GPU here (what torch.cuda would find), without importing torch."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def ensure_dagster_yaml(dagster_home: Path, *, gpu: bool | None = None) -> Path:
    """Create `dagster_home/dagster.yaml` if it is missing or empty (an empty one is what earlier
    versions left); a file with content is the user's and stays as it is. `gpu` (default: whether a CUDA
    GPU is present) adds the gpu pool limit."""
    path = dagster_home / "dagster.yaml"
    if path.is_file() and path.stat().st_size:
        return path
    dagster_home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dagster.yaml.", dir=dagster_home)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(DEFAULT_DAGSTER_YAML + (GPU_POOL_YAML if (cuda_gpu_present() if gpu is None else gpu) else ""))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


GPU_POOL = "gpu"


def ensure_gpu_pool(instance) -> None:
    """Create the `gpu` pool's slots from dagster.yaml's default limit before any run claims one. Left to the
    first claim, two runs starting together can each find the pool missing and both train at once."""
    storage = instance.event_log_storage
    if GPU_POOL not in storage.get_concurrency_keys() and storage.get_pool_config().default_pool_limit:
        storage.initialize_concurrency_limit_to_default(GPU_POOL)


def gpu_slots(instance) -> int | None:
    """The `gpu` pool's limit on this instance; None where it has none (a CPU-only machine)."""
    return next((p.limit for p in instance.event_log_storage.get_pool_limits() if p.name == GPU_POOL), None)
