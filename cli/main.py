"""`seren-remote`: submit replication jobs and follow them; run the local stack.

Exit codes: 0 the job completed (or the command succeeded), 1 the job failed or the API
refused, 3 timeout, 4 cancelled, 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from cli.client import ApiClient, ApiError, TransientError
from cli.watch import Watcher, describe, report_outcome

USAGE_ERROR = 2
COMMANDS = ("init", "validate", "sync", "status", "verify")
STATUSES = (
    "pending",
    "queued",
    "provisioning",
    "running",
    "cancelling",
    "completed",
    "failed",
    "timeout",
    "cancelled",
)
DEFAULT_STATE_DIR = Path(".local")
# The service's time limits (jobs.spec, which the client does not import; a test compares).
DEFAULT_TIMEOUT_SECONDS = 8 * 3600
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


class UsageError(Exception):
    pass


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seren-remote",
        description="Run PostgreSQL replication jobs on the remote replication service.",
    )
    parser.add_argument("--api", help="API endpoint (default: $SEREN_REMOTE_API, else the local stack's)")
    parser.add_argument("--api-key", help="API key (default: $SEREN_API_KEY, else the local stack's)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="state directory of a local stack, used when no API endpoint is given (default .local)",
    )
    commands = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")

    submit = commands.add_parser("submit", help="submit a job")
    submit.add_argument("command", choices=COMMANDS)
    submit.add_argument("--source", required=True, help="source PostgreSQL URL")
    submit.add_argument("--target", required=True, help="target PostgreSQL URL")
    for name in ("include-databases", "exclude-databases", "include-tables", "exclude-tables"):
        submit.add_argument(f"--{name}", type=_comma_list, default=[], metavar="A,B", help="comma list")
    submit.add_argument("--drop-existing", action="store_true", help="drop existing objects on the target")
    submit.add_argument("--no-sync", action="store_true", help="do not set up continuous sync after init")
    submit.add_argument(
        "--timeout",
        type=int,
        metavar="SECONDS",
        help=f"the job's time limit from its start: default {DEFAULT_TIMEOUT_SECONDS} (8 h), at most "
        f"{MAX_TIMEOUT_SECONDS} (7 days) unless the operator set less; 0 asks for that maximum. "
        "The job's deadline_at (status --json) says when it ends",
    )
    submit.add_argument(
        "--log-level",
        metavar="FILTER",
        help="a tracing filter, as the replicator's --log: info, off, database_replicator=debug, ...",
    )
    submit.add_argument(
        "--idempotency-key", help="resubmitting with the same key returns the same job (default: a new one)"
    )
    submit.add_argument("--watch", action="store_true", help="follow the job until it ends")
    submit.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    submit.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)

    status = commands.add_parser("status", help="show a job")
    status.add_argument("job_id", metavar="JOB")
    status.add_argument("--json", action="store_true")

    watch = commands.add_parser("watch", help="follow a job until it ends")
    watch.add_argument("job_id", metavar="JOB")
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between polls")

    listing = commands.add_parser("list", help="list your jobs, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")

    cancel = commands.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id", metavar="JOB")
    cancel.add_argument("--json", action="store_true")

    logs = commands.add_parser("logs", help="show a job's worker log")
    logs.add_argument("job_id", metavar="JOB")
    logs.add_argument("--limit", type=int, default=100)
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new lines until the job ends"
    )
    logs.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)

    local = commands.add_parser("local", help="the whole service on this machine")
    local_commands = local.add_subparsers(dest="local_action", required=True, metavar="COMMAND")
    from cli.local import add_interrupt_parser, add_state_dir_to_admin, add_up_parser

    add_up_parser(local_commands)
    add_interrupt_parser(local_commands)

    from cli.admin import add_admin_parser

    add_admin_parser(commands)
    add_state_dir_to_admin(commands.choices["admin"])
    return parser


def make_client(args: argparse.Namespace) -> ApiClient:
    """Endpoint and key from the flags, then the environment, then a running local stack.
    A local stack's key is only ever sent to that stack's endpoint."""
    api = args.api or os.environ.get("SEREN_REMOTE_API")
    key = args.api_key or os.environ.get("SEREN_API_KEY")
    if not api:
        stack_file = (args.state_dir or DEFAULT_STATE_DIR) / "stack.json"
        if not stack_file.exists():
            raise UsageError(
                "no API endpoint: set SEREN_REMOTE_API or --api (or start `seren-remote local up`)"
            )
        info = json.loads(stack_file.read_text())
        api = info["api_endpoint"]
        key = key or info.get("api_key")
    try:
        return ApiClient(base_url=api, api_key=key)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def submit_payload(args: argparse.Namespace) -> dict[str, Any]:
    job_filter = {
        name: getattr(args, name)
        for name in ("include_databases", "exclude_databases", "include_tables", "exclude_tables")
        if getattr(args, name)
    }
    options: dict[str, Any] = {"drop_existing": args.drop_existing, "enable_sync": not args.no_sync}
    if args.timeout is not None:
        options["job_timeout_seconds"] = args.timeout
    if args.log_level:
        options["log_level"] = args.log_level
    return {
        "schema_version": "1.1",
        "command": args.command,
        "source_url": args.source,
        "target_url": args.target,
        "filter": job_filter,
        "options": options,
    }


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _watch(client: ApiClient, job_id: str, interval: float, out: TextIO) -> int:
    job = Watcher(client, out, live=out.isatty(), interval_seconds=interval).watch(job_id)
    return report_outcome(client, job, out)


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    client = make_client(args)
    key = args.idempotency_key or str(uuid.uuid4())
    answer = client.submit(submit_payload(args), key)
    if args.json:
        _print_json(answer, out)
    else:
        out.write(f"job {answer['job_id']} submitted ({answer['status']})\n")
    out.flush()
    if not args.watch:
        return 0
    return _watch(client, str(answer["job_id"]), args.interval, out)


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    job = make_client(args).job(args.job_id)
    if args.json:
        _print_json(job, out)
        return 0
    out.write(f"job      {job['job_id']}\n")
    for label, name in (
        ("command", "command"),
        ("source", "source"),
        ("target", "target"),
        ("created", "created_at"),
        ("started", "started_at"),
        ("ended", "completed_at"),
    ):
        if job.get(name):
            out.write(f"{label:<8} {job[name]}\n")
    out.write(f"status   {describe(job)}\n")
    if job.get("error"):
        out.write(f"error    {job['error']}\n")
    return 0


def cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    return _watch(make_client(args), args.job_id, args.interval, out)


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    answer = make_client(args).jobs(status=args.status, limit=args.limit)
    if args.json:
        _print_json(answer, out)
        return 0
    jobs = answer.get("jobs", [])
    if not jobs:
        out.write("no jobs\n")
        return 0
    out.write(f"{'JOB':<36}  {'STATUS':<12}  {'COMMAND':<8}  {'CREATED':<24}  SOURCE -> TARGET\n")
    for job in jobs:
        out.write(
            f"{job['job_id']:<36}  {job['status']:<12}  {job.get('command', ''):<8}  "
            f"{job.get('created_at', ''):<24}  {job.get('source', '')} -> {job.get('target', '')}\n"
        )
    return 0


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    job = make_client(args).cancel(args.job_id)
    if args.json:
        _print_json(job, out)
    else:
        out.write(f"job {job['job_id']}: {job['status']}\n")
    return 0


def new_lines(seen: list[str], latest: list[str]) -> list[str]:
    """The lines of `latest` (a window on the log's end) that come after what was printed."""
    for overlap in range(min(len(seen), len(latest)), 0, -1):
        if seen[-overlap:] == latest[:overlap]:
            return latest[overlap:]
    return latest


def cmd_logs(args: argparse.Namespace, out: TextIO) -> int:
    import time

    client = make_client(args)
    if not args.follow:
        for line in client.logs(args.job_id, limit=args.limit):
            out.write(line + "\n")
        return 0
    printed: list[str] = []
    while True:
        try:
            ended = client.job(args.job_id).get("status") in ("completed", "failed", "timeout", "cancelled")
            latest = client.logs(args.job_id, limit=1000)
        except TransientError:
            time.sleep(args.interval)
            continue
        fresh = new_lines(printed, latest)
        for line in fresh:
            out.write(line + "\n")
        out.flush()
        printed = (printed + fresh)[-1000:]
        if ended:
            return 0
        time.sleep(args.interval)


HANDLERS = {
    "submit": cmd_submit,
    "status": cmd_status,
    "watch": cmd_watch,
    "list": cmd_list,
    "cancel": cmd_cancel,
    "logs": cmd_logs,
}


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.action == "local":
            from cli.local import run_interrupt, run_up

            return run_interrupt(args) if args.local_action == "interrupt" else run_up(args)
        if args.action == "admin":
            from cli.local import run_admin_command

            return run_admin_command(args)
        return HANDLERS[args.action](args, out)
    except UsageError as exc:
        print(f"seren-remote: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except ApiError as exc:
        print(f"seren-remote: the API refused ({exc.status}): {exc.message}", file=sys.stderr)
        return 1
    except TransientError as exc:
        print(f"seren-remote: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
