"""The ``leviathan-explore`` command: argument parsing only.

Each subcommand parses its arguments here and hands them to one library
function. Errors a user can cause exit with status 2 and one line on stderr
that names the bad value and what is allowed; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .config import ConfigError


class CliError(Exception):
    """A user error found after parsing (bad file, missing data...): one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; a positive integer is required")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer (>= 1)")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; an integer >= 0 is required")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 0")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; a positive number is required")
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


# ---- params -----------------------------------------------------------------------------------

def _add_params(sub) -> None:
    p = sub.add_parser("params", help="parameter allocation: dense vs iso-body vs isoparametric Leviathan",
                       description="Print where the parameters go for a dense configuration and its "
                                   "iso-body and isoparametric Leviathan counterparts.")
    p.add_argument("--preset", default=None, help="a named preset (default: paper-109m when no sizes are given)")
    p.add_argument("--vocab-size", type=positive_int)
    p.add_argument("--d-model", type=positive_int)
    p.add_argument("--n-layers", type=positive_int)
    p.add_argument("--n-heads", type=positive_int)
    p.add_argument("--tie", action="store_true", help="tie the dense input table to the output head")
    p.add_argument("--match-by", choices=["depth", "width", "ffn"], default="depth",
                   help="where the isoparametric Leviathan spends its freed budget (default: depth)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run_params)


def _run_params(args) -> int:
    from .config import PRESETS, preset
    from .params import comparison
    from .report import format_params_report

    name = args.preset or "paper-109m"
    overrides = {k: v for k, v in dict(vocab_size=args.vocab_size, d_model=args.d_model,
                                       n_layers=args.n_layers, n_heads=args.n_heads).items() if v is not None}
    if args.tie:
        overrides["tie_embeddings"] = True
    if name not in PRESETS:
        raise ConfigError("--preset", name, f"must be one of {sorted(PRESETS)}")
    dense = preset(name, **overrides)
    report = comparison(dense, by=args.match_by)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_params_report(report, title=f"preset {name}" + (f" with {overrides}" if overrides else "")))
    return 0


# ---- the parser -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="leviathan-explore",
                     description="Explore the Leviathan continuous token-embedding generator.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_params(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, CliError, FileNotFoundError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"leviathan-explore {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"leviathan-explore {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
