"""The README's quick start on a quiet machine and with one core kept busy, per thread setting.

    python benchmarks/threads_quickstart.py                      # default threads, 1 and 2; quiet and busy
    python benchmarks/threads_quickstart.py --steps 60 --json results/benchmarks/cpu-threads.json

Each case runs ``leviathan-explore compare --steps N`` (the quick start's job) in a fresh
output directory, on the already built default corpus, as a separate process; "busy" starts a
second process that spins on one core for the whole case (as another job would). Prints
the wall times and the busy / quiet ratio of each thread setting, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPIN = "while True: pass"


def run_case(threads: str, busy: bool, steps: int, workdir: Path) -> dict:
    cmd = [sys.executable, "-m", "leviathan_explore.cli", "compare", "--steps", str(steps), "--no-progress",
           "--out", str(workdir / f"compare-{threads}-{'busy' if busy else 'quiet'}")]
    if threads != "default":
        cmd += ["--threads", threads]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LEVIATHAN_THREADS")}
    hog = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        if hog:
            time.sleep(1.0)  # the spinning core is busy before the command looks at the machine
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
    finally:
        if hog:
            hog.kill()
            hog.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads((workdir / f"compare-{threads}-{'busy' if busy else 'quiet'}" / "dense" /
                          "summary.json").read_text())
    return {"threads_setting": threads, "busy": busy, "wall_s": wall,
            "threads_used": summary["hardware"].get("threads"), "command": " ".join(cmd[2:])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="compare --steps (the README's: 300)")
    p.add_argument("--threads", nargs="+", default=["default", "1", "2"])
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            for busy in (False, True):
                row = run_case(threads, busy, args.steps, Path(tmp))
                rows.append(row)
                print(f"threads {threads:>7} ({row['threads_used']} used), {'one core busy' if busy else 'quiet'}: "
                      f"{row['wall_s']:.1f} s", flush=True)
    out = {"steps": args.steps, "cpu_count": os.cpu_count(), "python": platform.python_version(),
           "processor": platform.processor(), "cases": rows, "ratios": {}}
    for threads in args.threads:
        quiet = next(r["wall_s"] for r in rows if r["threads_setting"] == threads and not r["busy"])
        busy = next(r["wall_s"] for r in rows if r["threads_setting"] == threads and r["busy"])
        out["ratios"][threads] = busy / quiet
        print(f"threads {threads}: busy / quiet = {busy / quiet:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
