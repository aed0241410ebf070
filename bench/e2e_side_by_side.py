"""The same small jobs on two checkouts' local stacks at once, alternating job by job.

    .venv/bin/python bench/e2e_side_by_side.py --baseline /path/to/other/checkout [--jobs 20]

The baseline is another checkout of this repository with its own virtualenv (for example
`git worktree add /tmp/baseline <commit> && make -C /tmp/baseline venv`). Both stacks run
their laptop defaults (`seren-remote local up`) against one PostgreSQL server. One job runs at
a time: a `verify` on this tree's stack, then one on the baseline's, the order swapped every
round, after one warm-up job each. Load from anything else on the machine falls on both
alike, which one run after the other cannot promise. Prints p50 and p95 of each part of a
job's way (see `JobTimes` in e2e_bench.py) per tree, and this tree's over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

# e2e_bench (this directory) puts the project on sys.path for the imports after it.
from e2e_bench import ROOT, JobTimes, create_bench_database, percentile, run_one_job

from local_cloud.postgres import start_postgres
from tests.support.e2e import RunningStack, start_stack

MEASURES = {
    "submit -> launched": "to_launched",
    "submit -> running": "to_running",
    "running -> completed (engine)": "engine_run",
    "completed -> terminated": "to_terminated",
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, required=True, help="another checkout, with its .venv")
    parser.add_argument("--jobs", type=int, default=20, help="measured jobs per tree")
    args = parser.parse_args()
    trees = {"this tree": ROOT, "baseline": args.baseline.resolve()}
    times: dict[str, list[JobTimes]] = {name: [] for name in trees}
    with (
        start_postgres(password="bench-pw-not-secret") as server,
        TemporaryDirectory(prefix="e2e-pair-") as tmp,
    ):
        create_bench_database(server)
        stacks: dict[str, RunningStack] = {}
        try:
            for index, (name, tree) in enumerate(trees.items()):
                stacks[name] = start_stack(Path(tmp) / f"stack-{index}", settings=(), checkout=tree)
            for stack in stacks.values():
                run_one_job(stack, server.url())  # warm-up: first imports, first clients
            for round_number in range(args.jobs):
                order = list(stacks) if round_number % 2 == 0 else list(stacks)[::-1]
                for name in order:
                    times[name].append(run_one_job(stacks[name], server.url()))
        finally:
            for stack in stacks.values():
                if stack.process.poll() is None:
                    stack.stop()
    ms = 1000.0
    print(f"{'measure':<36} {'this tree p50 / p95':>20} {'baseline p50 / p95':>20} {'ratio p50 / p95':>16}")
    summary = {}
    for label, attribute in MEASURES.items():
        ours = [getattr(one, attribute) for one in times["this tree"]]
        theirs = [getattr(one, attribute) for one in times["baseline"]]
        p50, p95 = percentile(ours, 0.5), percentile(ours, 0.95)
        b50, b95 = percentile(theirs, 0.5), percentile(theirs, 0.95)
        print(
            f"{label + ' (ms)':<36} {p50 * ms:>9.0f} / {p95 * ms:<8.0f} {b50 * ms:>9.0f} / {b95 * ms:<8.0f}"
            f" {p50 / b50:>7.2f} / {p95 / b95:<6.2f}"
        )
        summary[label] = {
            "p50_ms": round(p50 * ms),
            "p95_ms": round(p95 * ms),
            "baseline_p50_ms": round(b50 * ms),
            "baseline_p95_ms": round(b95 * ms),
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
