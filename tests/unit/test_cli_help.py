"""Every command and flag of the CLI says what it does (`--help` is the CLI's manual)."""

from __future__ import annotations

import argparse

from rayledger_cli import build_parser


def test_every_flag_has_help_text() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, sub in [("rayledger", parser), *commands.choices.items()]:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
    assert set(commands.choices) >= {"serve", "stop", "verify", "seed", "migrate"}
