"""CourseGPT Forge: Dagster assets for the CourseGPT-Pro router, math and code LoRA agents."""

import warnings

# Partitioned asset checks (one result per partition) are a preview API in dagster 1.13 that we rely on.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
# Dagster's own Pipes code calls one of its preview APIs on every PipesSubprocessClient run (the tuning
# step); the warning is about Dagster internals, not about anything this project calls.
warnings.filterwarnings("ignore", message="Function `PipesMessageReader.expected_writer_count` is currently in preview")
