"""`coursegpt`: a thin command line over Dagster's Python API.

    coursegpt run [--agent A] [--base-model M] [--assets a,b]   materialise with live progress (publishes nothing)
    coursegpt run --publish [...]                                then publish the pairs' cards and adapters (publish_job)
    coursegpt run --dry-run [--agent A] [--base-model M]        per pair: backend, cost or local time; runs nothing
    coursegpt status                                             versions per pair and what is stale
    coursegpt plan                                               the training plan, cost and time estimates
    coursegpt home                                               create the local home, print its path
    coursegpt score <agent> ...                                  score saved predictions, no model needed
    coursegpt --version
"""

from __future__ import annotations

import argparse
import os
import sys


def _dagster_home():
    from coursegpt_assets.cli.local_instance import ensure_dagster_yaml
    from coursegpt_assets.core import settings

    home = settings.current().dagster_home
    ensure_dagster_yaml(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _instance():
    import dagster as dg

    _dagster_home()
    return dg.DagsterInstance.get()


def cmd_home(args) -> int:
    """For `make dev`/`make check`: the instance config they need exists before Dagster starts."""
    print(_dagster_home())
    return 0


def cmd_run(args) -> int:
    from coursegpt_assets.cli.runner import run_pipeline
    from coursegpt_assets.cli.status import print_table
    from coursegpt_assets.core.plan import default_plan
    from coursegpt_assets.definitions import defs
    from coursegpt_assets.defs.jobs import PUBLISH_STAGE

    plan = default_plan()
    agents = [a for a in plan.agent_names if not args.agent or a in args.agent]
    pairs = [
        p.key for p in plan.planned_pairs
        if p.agent in agents and (not args.base_model or p.base_model in args.base_model)
    ]
    unknown = set(args.agent or []) - set(plan.agent_names)
    unknown |= set(args.base_model or []) - set(plan.base_models)
    if unknown:
        print(f"error: not in training_plan.yaml: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    graph = defs.resolve_asset_graph()
    defined = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    assets = set(args.assets.split(",")) if args.assets else None
    if assets and assets - defined:
        print(f"error: unknown assets {sorted(assets - defined)}; defined: {sorted(defined)}", file=sys.stderr)
        return 2
    if assets and PUBLISH_STAGE[0] in assets and not args.publish:
        print(f"error: publishing is opt-in: add --publish to run {PUBLISH_STAGE[0]}", file=sys.stderr)
        return 2
    if assets and args.publish:
        assets.add(PUBLISH_STAGE[0])
    if args.dry_run:
        return _dry_run(pairs)
    # one line per step on stdout: no per-file progress bars from the HF libraries in step processes
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    print(f"coursegpt run: agents={agents} pairs={pairs}" + (" (then publish)" if args.publish else ""))
    ok, lines = run_pipeline(
        instance=_instance(), agents=agents, pairs=pairs, assets=assets, defined_assets=defined,
        max_parallel=args.parallel or os.cpu_count() or 1, publish=args.publish,
    )
    rows = [
        [line.asset, line.partition, line.status, f"{line.seconds:.1f}",
         ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in line.headline.items())]
        for line in lines
    ]
    print()
    print_table(["asset", "partition", "status", "seconds", "headline"], rows)
    return 0 if ok else 1


def _dry_run(pairs: list[str]) -> int:
    """What `run` would train and what it would take, without running anything."""
    from coursegpt_assets.cli.status import DRY_RUN_HEADERS, dry_run_rows, print_table
    from coursegpt_assets.core import settings
    from resources import store_for

    current = settings.current()
    print(f"coursegpt run --dry-run ({current.env} environment): nothing is run")
    print_table(DRY_RUN_HEADERS, dry_run_rows(store_for(current.store), pairs))
    return 0


def cmd_status(args) -> int:
    from coursegpt_assets.cli.status import pair_status, print_table
    from coursegpt_assets.core import settings
    from resources import store_for

    store = store_for(settings.current().store)
    rows = [list(r.values()) for r in pair_status(store)]
    print_table(["pair", "data", "adapter", "report", "stale"], rows)
    return 0


def cmd_plan(args) -> int:
    from coursegpt_assets.cli.status import PLAN_HEADERS, plan_rows, print_table
    from coursegpt_assets.core import settings
    from resources import store_for

    store = store_for(settings.current().store)
    print_table(PLAN_HEADERS, plan_rows(store))
    from coursegpt_assets.core.plan import default_plan

    plan = default_plan()
    hp, smoke = plan.hyperparameters, plan.smoke
    print(f"\nhyperparameters: LoRA r={hp.lora_rank} alpha={hp.lora_alpha} dropout={hp.lora_dropout} "
          f"targets={','.join(hp.target_modules)}; epochs={hp.epochs} lr={hp.learning_rate:g} "
          f"(Vertex LR multiplier {hp.learning_rate_multiplier:g}) warm-up={hp.warmup_ratio:g} "
          f"batch={hp.batch_size}x{hp.gradient_accumulation_steps} max_length={hp.max_length} seed={hp.seed}")
    print(f"smoke tier (tiny-llama): epochs={smoke.epochs} lr={smoke.learning_rate or hp.learning_rate:g} "
          f"max_train_examples={smoke.max_train_examples} max_length={smoke.max_length}")
    print(f"cost guard: {plan.cost.price_per_million_tokens_usd:g} USD per 1M tokens x epochs, "
          f"budget {plan.cost.budget_usd:g} USD per job; it blocks pairs tuned on Vertex AI only "
          "(backend vertex: COURSEGPT_ENV=gcp and a vertex id)")
    print("local training (est.): tokens one epoch trains x epochs / tokens per second, measured by the pair's "
          "latest local run, else base_models.<model>.local_tokens_per_second")
    return 0


def _version() -> str:
    """`coursegpt-forge X (dagster Y)`: the installed distribution's version, as pip sees it."""
    from importlib.metadata import version

    return f"coursegpt-forge {version('coursegpt-forge')} (dagster {version('dagster')})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coursegpt", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialise the pipeline with live progress")
    run.add_argument("--agent", action="append", help="agent(s) to run (repeatable); default all")
    run.add_argument("--base-model", action="append", help="base model(s) to run (repeatable); default all")
    run.add_argument("--assets", help="comma-separated asset names to materialise; default all stages")
    run.add_argument("--parallel", type=int, default=None, help="partitions run side by side (default: cores)")
    run.add_argument("--publish", action="store_true",
                     help="after the pipeline, publish each pair's reviewed card and adapter (publish_job); "
                          "smoke-test models are never published")
    run.add_argument("--dry-run", action="store_true",
                     help="print each pair's backend and estimated cost or local training time; run nothing")
    run.set_defaults(func=cmd_run)
    sub.add_parser("status", help="latest versions per pair and staleness").set_defaults(func=cmd_status)
    sub.add_parser("plan", help="the training plan, cost and local time estimates").set_defaults(func=cmd_plan)
    sub.add_parser("home", help="create the local Dagster home (and its dagster.yaml); print its path"
                   ).set_defaults(func=cmd_home)
    from coursegpt_assets.cli.score import add_score_parser

    add_score_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from coursegpt_assets.core.plan import PlanError
    from coursegpt_assets.core.settings import SettingsError

    try:
        args = build_parser().parse_args(argv)  # the score subcommands come from the plan's agents
        return args.func(args)
    except (SettingsError, PlanError) as e:  # configuration: one line that says what to set, no traceback
        print(f"coursegpt: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
