"""`coursegpt score <agent>`: score saved predictions without loading any model.

One subcommand per planned agent that has a file scorer (`Agent.score_command`: its arguments, scorer and
summary); row i of the predictions file goes with row i of the gold/benchmark file. The lead's CLI calls
`add_score_parser(subparsers)` and dispatches to `args.func(args)`, which returns an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import ScoreCommand
from coursegpt_assets.core.plan import default_plan


def _handler(agent_name: str, command: ScoreCommand) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            report = command.score(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"coursegpt score {agent_name}: error: {exc}", file=sys.stderr)
            return 2
        print(command.summary(report))
        print(f"report: {args.out}")
        return 0

    run.__name__ = run.__qualname__ = f"cmd_score_{agent_name}"  # parsed args name the command they run
    return run


def add_score_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `score <agent>` for every planned agent with a file scorer; each sets `func`."""
    score = subparsers.add_parser("score", help="score saved predictions (no model needed)")
    kinds = score.add_subparsers(dest="score_kind", required=True)
    for name in default_plan().agent_names:
        command = get_agent(name).score_command
        if command is None:
            continue
        parser = kinds.add_parser(name, help=command.help)
        for flag, options in command.arguments:
            parser.add_argument(flag, **options)
        parser.set_defaults(func=_handler(name, command))
    return score
