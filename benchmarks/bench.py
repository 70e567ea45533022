"""``leviathan-explore bench`` without the installed command: ``python benchmarks/bench.py [options]``.

The same options (``--help``). It builds only the bench parser, so it runs where the
other subcommands' dependencies (the tokenizer wheel, say) are missing, as on the GPU
machine; errors exit 2 with one line, as the command does. The default token source is
the committed o200k sample next to this script (when present), as for the command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leviathan_explore.bench import bench_command  # noqa: E402
from leviathan_explore.cli import bench_arguments  # noqa: E402

TOKEN_SAMPLE = Path(__file__).resolve().parent / "o200k_code_sample.npy"  # make_token_sample.py writes it


class OneLineErrors(argparse.ArgumentParser):
    """A usage error is one line and exit 2 (argparse prints the usage too)."""

    def error(self, message: str) -> None:
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)  # a raw value stays on one line
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrors(prog="bench.py", description="Speed and memory: generator, training steps, inference.")
    bench_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return bench_command(device=args.device, quick=args.quick, tokens_file=args.tokens, repeats=args.repeats,
                             compile=args.compile, threads=args.threads, json_file=args.json,
                             o200k_sample=TOKEN_SAMPLE)
    except (OSError, ValueError) as exc:  # ValueError: also ConfigError; OSError: a missing --tokens file, a full disk
        print(f"bench.py: error: {(str(exc).splitlines() or [type(exc).__name__])[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
