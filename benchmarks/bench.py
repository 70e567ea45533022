"""``leviathan-explore bench`` without the installed command: ``python benchmarks/bench.py [options]``.

The same options (``--help``). It builds only the bench parser, so it runs where the
other subcommands' dependencies (the tokenizer wheel, say) are missing, as on the GPU
machine; errors exit 2 with one line, as the command does.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leviathan_explore.cli import CliError, _Parser, _run_bench, bench_arguments  # noqa: E402
from leviathan_explore.config import ConfigError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="bench.py", description="Speed and memory: generator, training steps, inference.")
    bench_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _run_bench(args)
    except (ConfigError, CliError, FileNotFoundError, ValueError) as exc:
        print(f"bench.py: error: {(str(exc).splitlines() or [type(exc).__name__])[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
