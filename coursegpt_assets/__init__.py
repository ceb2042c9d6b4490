"""CourseGPT Forge: Dagster assets for the CourseGPT-Pro router, math and code LoRA agents."""

import warnings

# Partitioned asset checks (one result per partition) are a preview API in dagster 1.13 that we rely on.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
