"""`python -m dbt_style_checks.validate [schema.yml]`: load the dbt-style tests; exit 1 naming file, line and problem."""

from __future__ import annotations

import sys
from collections import Counter

from dbt_style_checks.spec import DEFAULT_SCHEMA, SchemaError, load_schema


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else DEFAULT_SCHEMA
    try:
        tests = load_schema(path)
    except SchemaError as e:
        print(e, file=sys.stderr)
        return 1
    per_asset = Counter(t.asset for t in tests)
    blocking = sum(t.blocking for t in tests)
    summary = ", ".join(f"{asset}: {n}" for asset, n in per_asset.items())
    print(f"{path}: {len(tests)} tests ({blocking} blocking) — {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
