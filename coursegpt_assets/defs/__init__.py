"""Everything that defines a Dagster object, one folder per pipeline stage (each folder is an asset group).

`coursegpt_assets/definitions.py` loads every module below with `dg.load_defs`; the stage folders import
`partitions`, `jobs` and `common` from here and the pure packages (`core`, `data`, `agents`, `training`,
`scoring`, `cards`) for their logic.
"""
