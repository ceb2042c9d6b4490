"""The dbt-style data tests of `dbt_style_checks/schema.yml`, one partitioned multi-check per tested asset.

They test assets of several stages (clean_examples, dataset_splits, benchmark, tuning_dataset); the
loader compiles them from the YAML (no store access at load time).
"""

from dbt_style_checks.loader import build_dbt_checks

DATA_TESTS = build_dbt_checks()
