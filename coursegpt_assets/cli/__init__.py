"""The `coursegpt` command: the runner, `status`/`plan` tables, `score`, and the local instance's config.

Only the entry point (`coursegpt_assets.cli.main:main`) imports this package; nothing else does.
"""
