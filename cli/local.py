"""`seren-remote local up`, and admin commands aimed at a running local stack."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path(".local")


def add_up_parser(local_commands: Any) -> None:
    defaults = _defaults()
    up = local_commands.add_parser(
        "up",
        help="run moto, the handlers, the worker driver and the HTTP API in the foreground",
        description="Run the whole service on this machine until Ctrl-C.",
    )
    up.add_argument(
        "--port",
        type=int,
        default=defaults.port,
        help=f"API port on 127.0.0.1 (default {defaults.port}; 0 = any)",
    )
    up.add_argument(
        "--state-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="where stack.json and logs go (default .local)",
    )
    up.add_argument(
        "--terraform",
        action="store_true",
        help="provision with `terraform apply` of terraform/ (needs terraform and the provider); "
        "Ctrl-C destroys it",
    )
    # Unset settings take the mode's defaults: the module refuses the fast mode's shortest.
    up.add_argument("--max-concurrent-jobs", type=int, default=None)
    up.add_argument(
        "--max-running-jobs-per-owner",
        type=int,
        default=None,
        help="slots one key owner may hold at once (default: every slot)",
    )
    up.add_argument("--reaper-interval", type=float, default=None, metavar="SECONDS")
    up.add_argument("--heartbeat-interval", type=int, default=None, metavar="SECONDS")
    up.add_argument("--heartbeat-timeout", type=int, default=None, metavar="SECONDS")
    up.add_argument(
        "--provisioning-grace",
        type=int,
        default=None,
        metavar="SECONDS",
        help=f"how long an instance may take to report running (default {defaults.provisioning_grace})",
    )
    up.add_argument(
        "--instance-boot-seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long an instance boots before its user-data runs (default 0)",
    )
    up.add_argument("--log-level", default=None, help="the handlers' POWERTOOLS_LOG_LEVEL")
    up.add_argument(
        "--seren-console-url",
        default=None,
        metavar="URL",
        help="the SerenDB console API for project targets (e.g. a python -m local_cloud.console stand-in)",
    )


def add_interrupt_parser(local_commands: Any) -> None:
    interrupt = local_commands.add_parser(
        "interrupt",
        help="play a Spot interruption of a job's instance",
        description="Serve a Spot interruption notice on the job's instance metadata, then "
        "terminate the instance when the notice runs out (EC2 gives two minutes).",
    )
    interrupt.add_argument("--job", required=True, help="the job whose instance is interrupted")
    interrupt.add_argument("--notice-seconds", type=float, default=120.0, metavar="N")
    interrupt.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS, help="the local stack's")


def run_interrupt(args: argparse.Namespace) -> int:
    from jobs import aws
    from jobs.store import JobStore
    from local_cloud.ec2_driver import INTERRUPT_TAG

    info = _use_local_stack(getattr(args, "state_dir", None) or DEFAULT_STATE_DIR)
    if info is None:
        return 2
    job = JobStore(info["table_name"]).get(args.job)
    instances = [job.instance_id] if job is not None and job.instance_id else []
    if not instances:
        print(f"seren-remote: job {args.job} has no running instance", file=sys.stderr)
        return 1
    ec2 = aws.client("ec2")
    ec2.create_tags(Resources=instances, Tags=[{"Key": INTERRUPT_TAG, "Value": str(args.notice_seconds)}])
    for instance_id in instances:
        print(f"{instance_id}: Spot interruption notice served; terminated in {args.notice_seconds:g} s")
    return 0


def _defaults() -> Any:
    from local_cloud.stack import StackOptions

    return StackOptions()


def add_state_dir_to_admin(admin_parser: argparse.ArgumentParser) -> None:
    """Every admin command takes --state-dir DIR: act on the local stack running there."""
    parsers = [admin_parser]
    for action in admin_parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.extend(action.choices.values())
    for parser in parsers:
        parser.add_argument(
            "--state-dir", type=Path, default=argparse.SUPPRESS, help="act on the local stack running there"
        )


def run_up(args: argparse.Namespace) -> int:
    from local_cloud.stack import StackOptions, run

    given = {
        name: value
        for name, value in {
            "max_concurrent_jobs": args.max_concurrent_jobs,
            "max_running_jobs_per_owner": args.max_running_jobs_per_owner,
            "reaper_interval": args.reaper_interval,
            "heartbeat_interval": args.heartbeat_interval,
            "heartbeat_timeout": args.heartbeat_timeout,
            "provisioning_grace": args.provisioning_grace,
            "log_level": args.log_level,
            "instance_boot_seconds": args.instance_boot_seconds,
            "seren_console_url": args.seren_console_url,
        }.items()
        if value is not None
    }
    given.update(port=args.port, state_dir=getattr(args, "state_dir", None) or DEFAULT_STATE_DIR)
    options = StackOptions.for_terraform(**given) if args.terraform else StackOptions(**given)
    return run(options)


def run_admin_command(args: argparse.Namespace) -> int:
    from cli.admin import run_admin

    state_dir = getattr(args, "state_dir", None)
    if state_dir is not None and _use_local_stack(state_dir) is None:
        return 2
    return run_admin(args)


def _use_local_stack(state_dir: Path) -> dict[str, Any] | None:
    """Point this process's AWS clients at the local stack running with `state_dir`: its
    stack.json, or None (said on stderr) when none runs there."""
    from jobs import aws
    from local_cloud.stack import client_environment, load_stack_info

    try:
        info = load_stack_info(state_dir)
    except FileNotFoundError:
        print(f"seren-remote: no local stack runs with state dir {state_dir}", file=sys.stderr)
        return None
    os.environ.update(client_environment(info))
    aws.reset_clients()
    return info
