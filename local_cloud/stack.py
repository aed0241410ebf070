"""`seren-remote local up`: the whole service on one machine.

moto plays AWS's APIs. The deployment is made in moto either by `terraform apply` of the
real `terraform/` module (`--terraform`) or, by default and in seconds, by
creating the same objects through the same APIs (local_cloud/provision.py). Either way,
four drivers then play the parts AWS plays around the code, each following what the AWS
APIs say was deployed (local_cloud/wiring.py): API Gateway (the HTTP front), the stream
event source mapping (the poller), EventBridge (the scheduler) and EC2 (the driver that
runs instances' user-data). The handlers, the worker and the engine are the production
code; only the endpoints differ.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import boto3

from local_cloud.ec2_driver import INSTANCE_DIR, Ec2Driver
from local_cloud.http_front import HttpFront, parse_routes
from local_cloud.lambda_runtime import LambdaFunction
from local_cloud.moto_server import MotoServer
from local_cloud.provision import Network, apply_module, local_network, provision_fast
from local_cloud.scheduler import Scheduler
from local_cloud.stream_poller import StreamPoller
from local_cloud.terraform import Terraform, unavailable_reason
from local_cloud.wiring import Wiring, WiringError, read_wiring

logger = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[1]
WORKER_SCRIPT = CHECKOUT / "worker" / "worker.sh"
STACK_FILE = "stack.json"
TERRAFORM_DIR = "terraform"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
CLIENTS = (
    "dynamodb",
    "dynamodbstreams",
    "kms",
    "ec2",
    "logs",
    "sqs",
    "iam",
    "lambda",
    "apigatewayv2",
    "events",
)


@dataclass
class StackOptions:
    port: int = 8080
    state_dir: Path = Path(".local")
    # Provision with `terraform apply` of the module instead of the fast way.
    terraform: bool = False
    max_concurrent_jobs: int = 2
    # None: every slot (a local stack's jobs are mostly one key's).
    max_running_jobs_per_owner: int | None = None
    # Seconds between reaper runs: EventBridge's shortest rate, a minute, is long on a
    # laptop. None: the deployed rule's own rate.
    reaper_interval: float | None = 5.0
    # Seconds, for a laptop; the module's validations refuse most of these below their
    # minimums, so `for_terraform` raises them.
    heartbeat_interval: int = 2
    heartbeat_timeout: int = 10
    provisioning_grace: int = 60
    launch_lease: int = 30
    cancel_grace: int = 30
    pending_grace: int = 30
    slot_hold_grace: int = 60
    orphan_grace: int = 60
    deadline_grace: int = 30
    # Attempts of one job before it fails (the module's max_launch_attempts).
    max_attempts: int = 3
    region: str = "us-east-1"
    prefix: str = "seren-local"
    owner: str = "local"
    log_level: str = "WARNING"
    # The event source mapping's settings (Terraform's defaults).
    batch_size: int = 10
    # The module's default is 1 s; a laptop session wants launches at once.
    batching_window: int = 0
    maximum_retry_attempts: int = 5
    # Lambda's event source mapping polls a DynamoDB stream shard 4 times a second.
    stream_idle_wait: float = 0.25
    ec2_poll_interval: float = 1.0
    kill_grace_seconds: float = 5.0
    # How long an instance boots before its user-data runs (EC2 takes tens of seconds).
    instance_boot_seconds: float = 0.0
    # Where workers reach the SerenDB console API (a `local_cloud.console` stand-in in tests).
    seren_console_url: str = "https://api.serendb.com"

    @classmethod
    def for_terraform(cls, **settings: Any) -> StackOptions:
        """Options the module's variable validations accept (its minimums)."""
        minimums = {"heartbeat_interval": 5, "heartbeat_timeout": 60, "launch_lease": 180}
        return cls(**{**minimums, **settings, "terraform": True})


def module_variables(options: StackOptions, network: Network) -> dict[str, Any]:
    """The module's variables for this stack: its names, the laptop's short intervals, and
    what only the local cloud sets (loopback databases allowed, workers that never power
    off this machine, tables that may be destroyed)."""
    prefix = options.prefix
    return {
        "aws_region": options.region,
        "project_name": prefix,
        "environment": "local",
        "dynamodb_table_name": f"{prefix}-jobs",
        "worker_ami_id": network.image_id,
        "worker_instance_type": "t3.medium",
        "worker_instance_type_by_size": [{"instance_type": "t3.medium"}],
        "worker_fallback_instance_types": [],
        "worker_iam_role_name": f"{prefix}-worker",
        "worker_root_volume_size_gb": 8,
        "worker_root_device_name": "/dev/xvda",
        "vpc_id": network.vpc_id,
        "subnet_ids": network.subnet_ids,
        "max_concurrent_jobs": options.max_concurrent_jobs,
        "max_running_jobs_per_owner": options.max_running_jobs_per_owner or options.max_concurrent_jobs,
        "max_unfinished_jobs_per_owner": 50,
        "max_job_runtime_seconds": 7 * 24 * 3600,
        "max_estimated_size_bytes": 16 * 1024**4,
        # Test suites drive the local stack with one key, far faster than a person.
        "api_key_rate_per_second": 1000,
        "api_key_burst": 10000,
        "job_retention_days": 30,
        "allowed_target_suffixes": [],
        "allow_loopback_hosts": True,
        "allow_private_hosts": False,
        "worker_shutdown_if_not_terminated": False,
        "table_deletion_protection": False,
        "heartbeat_interval_seconds": options.heartbeat_interval,
        "heartbeat_timeout_seconds": options.heartbeat_timeout,
        "provisioning_grace_seconds": options.provisioning_grace,
        "launch_lease_seconds": options.launch_lease,
        "reaper_grace_seconds": {
            "deadline": options.deadline_grace,
            "cancel": options.cancel_grace,
            "pending": options.pending_grace,
            "slot_hold": options.slot_hold_grace,
            "orphan": options.orphan_grace,
        },
        "max_launch_attempts": options.max_attempts,
        "worker_capacity": "spot-then-on-demand",
        "worker_engine": "auto",
        "max_capacity_failures": 12,
        "reaper_schedule_minutes": 1,
        "api_reserved_concurrency": -1,
        "launcher_reserved_concurrency": -1,
        "reaper_reserved_concurrency": 1,
        "launcher_batch_size": options.batch_size,
        "launcher_batching_window_seconds": options.batching_window,
        "launcher_maximum_retry_attempts": options.maximum_retry_attempts,
        "launcher_maximum_record_age_seconds": 3600,
        "lambda_runtime": "python3.12",
        "lambda_architecture": "arm64",
        "log_level": options.log_level,
        "log_retention_days": 7,
        "metrics_namespace": "SerenReplication",
        "seren_console_url": options.seren_console_url,
    }


def instance_environment(options: StackOptions, aws_endpoint_url: str) -> dict[str, str]:
    """What a worker instance has before its user-data runs: the image's setup (tools on
    PATH, the worker script) and, in place of an instance profile, moto's fake credentials."""
    from local_cloud.postgres import bin_dir

    path = os.pathsep.join([str(Path(sys.executable).parent), str(bin_dir()), os.environ.get("PATH", "")])
    return {
        "PATH": path,
        "HOME": INSTANCE_DIR,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
        "AWS_REGION": options.region,
        "AWS_DEFAULT_REGION": options.region,
        "AWS_ENDPOINT_URL": aws_endpoint_url,
        "WORKER_SCRIPT": str(WORKER_SCRIPT),
        "LOCAL_LOG_DIR": INSTANCE_DIR,
        # The image's worker reads IMDS every 5 s for a Spot notice; a laptop's every second.
        "SPOT_NOTICE_POLL_SECONDS": "1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        **FAKE_CREDENTIALS,
    }


def aws_environment(region: str, endpoint: str) -> dict[str, str]:
    """Where the functions, Terraform and admin commands find the local AWS."""
    return {
        **FAKE_CREDENTIALS,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
    }


class LocalStack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.moto = MotoServer(self.state_dir / "moto.log")
        self.terraform: Terraform | None = None
        self.wiring: Wiring | None = None
        self.api_key: str | None = None
        self.front: HttpFront | None = None
        self.poller: StreamPoller | None = None
        self.scheduler: Scheduler | None = None
        self.ec2_driver: Ec2Driver | None = None
        self._lambda_log: TextIO | None = None
        self._real_stdout: TextIO | None = None

    @property
    def stack_file(self) -> Path:
        return self.state_dir / STACK_FILE

    def start(self) -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stack_file.unlink(missing_ok=True)
        self.moto.start()
        try:
            return self._start_rest()
        except BaseException:
            self.stop()
            raise

    def provision(self, clients: dict[str, Any]) -> None:
        """Deploy into moto, the way the options say."""
        options = self.options
        variables = module_variables(options, local_network(clients["ec2"]))
        if options.terraform:
            self.terraform = Terraform(
                work_dir=self.state_dir / TERRAFORM_DIR,
                environment=aws_environment(options.region, self.moto.url),
            )
            apply_module(self.terraform, variables)
        else:
            provision_fast(clients, variables)

    def _start_rest(self) -> dict[str, Any]:
        options = self.options
        endpoint = self.moto.url
        # The functions' runtime environment: what Lambda gives every function (region,
        # credentials; here, moto's endpoint), not what the deployment configures.
        os.environ.update({**aws_environment(options.region, endpoint), "POWERTOOLS_TRACE_DISABLED": "true"})
        session = boto3.session.Session(region_name=options.region)
        clients = {name: session.client(name) for name in CLIENTS}  # type: ignore[call-overload]
        self.provision(clients)
        wiring = self.wiring = read_wiring(clients, project_name=options.prefix)
        if wiring.api.payload_format_version != "2.0":
            raise WiringError(
                f"the local front speaks payload format 2.0, not {wiring.api.payload_format_version}"
            )

        from jobs import aws
        from jobs.api_keys import ApiKeyStore

        aws.reset_clients()
        self.api_key = ApiKeyStore(self.api_keys_table).create(options.owner).key

        # Lambda sends its functions' stdout (Powertools logs, EMF metrics) to CloudWatch Logs;
        # here the whole process's stdout goes to a file while the stack runs.
        self._lambda_log = (self.state_dir / "lambda.log").open("a", buffering=1)
        self._real_stdout, sys.stdout = sys.stdout, self._lambda_log
        api = LambdaFunction.from_config(wiring.api.function, region=options.region)
        launcher = LambdaFunction.from_config(wiring.stream.function, region=options.region)
        reaper = LambdaFunction.from_config(wiring.schedule.function, region=options.region)
        for function in (api, launcher, reaper):
            function.load()  # cold starts now: a broken import fails `local up`, not a request

        self.ec2_driver = Ec2Driver(
            clients["ec2"],
            state_dir=self.state_dir,
            region=options.region,
            instance_env=instance_environment(options, endpoint),
            poll_interval_seconds=options.ec2_poll_interval,
            kill_grace_seconds=options.kill_grace_seconds,
            boot_seconds=options.instance_boot_seconds,
            launch_template=wiring.launch_template,
        )
        self.poller = StreamPoller.for_mapping(
            clients["dynamodbstreams"],
            clients["sqs"],
            wiring.stream,
            invoke=launcher.invoke,
            idle_wait_seconds=options.stream_idle_wait,
            on_batch=self.ec2_driver.wake,
        )
        self.scheduler = Scheduler(
            reaper.invoke,
            interval_seconds=options.reaper_interval or wiring.schedule.interval_seconds,
            rule_arn=wiring.schedule.rule_arn,
            region=options.region,
            after_run=self._wake_all,
        )
        self.front = HttpFront(
            api.invoke,
            port=options.port,
            routes=parse_routes(wiring.api.route_keys),
            on_request=self._after_request,
            timeout_seconds=wiring.api.timeout_seconds,
        )
        self.ec2_driver.start()
        self.poller.start()
        self.scheduler.start()
        self.front.start()
        info = self.info()
        # Whole at once, and 0600 from the start: readers wait for the file to appear.
        written = self.stack_file.with_suffix(".tmp")
        written.unlink(missing_ok=True)
        written.touch(mode=0o600)
        written.write_text(json.dumps(info, indent=2) + "\n")
        written.replace(self.stack_file)
        return info

    @property
    def api_keys_table(self) -> str:
        assert self.wiring is not None
        return self.wiring.api.function.environment["API_KEYS_TABLE_NAME"]

    def _after_request(self, method: str) -> None:
        if method not in ("GET", "HEAD", "OPTIONS"):
            self._wake_all()

    def _wake_all(self) -> None:
        if self.poller is not None:
            self.poller.wake()
        if self.ec2_driver is not None:
            self.ec2_driver.wake()

    def info(self) -> dict[str, Any]:
        assert self.wiring is not None and self.front is not None and self.scheduler is not None
        api_environment = self.wiring.api.function.environment
        launcher_environment = self.wiring.stream.function.environment
        reaper_environment = self.wiring.schedule.function.environment
        return {
            "api_endpoint": self.front.url,
            "api_key": self.api_key,
            "owner": self.options.owner,
            "provisioned_by": "terraform" if self.options.terraform else "api",
            "aws_endpoint_url": self.moto.url,
            "region": self.options.region,
            "table_name": api_environment["JOBS_TABLE_NAME"],
            "api_keys_table_name": api_environment["API_KEYS_TABLE_NAME"],
            "stream_arn": self.wiring.stream.stream_arn,
            "kms_key_id": api_environment["KMS_KEY_ID"],
            "launch_template_id": self.wiring.launch_template_id,
            "worker_log_group": api_environment["WORKER_LOG_GROUP"],
            "dlq_arn": self.wiring.stream.on_failure_arn,
            "project_tag": launcher_environment["PROJECT_TAG"],
            "max_concurrent_jobs": int(launcher_environment["MAX_CONCURRENT_JOBS"]),
            "reaper_interval_seconds": self.scheduler.interval_seconds,
            "heartbeat_interval_seconds": int(launcher_environment["HEARTBEAT_INTERVAL_SECONDS"]),
            "heartbeat_timeout_seconds": int(reaper_environment["HEARTBEAT_TIMEOUT_SECONDS"]),
            "pid": os.getpid(),
            "moto_pid": self.moto.pid,
            "state_dir": str(self.state_dir),
        }

    def stop(self) -> None:
        for component in (self.front, self.scheduler, self.poller, self.ec2_driver):
            if component is not None:
                component.stop()
        try:
            if self.terraform is not None and self.terraform.state_file.exists():
                self.terraform.destroy()
        finally:
            self.moto.stop()
        self.stack_file.unlink(missing_ok=True)
        if self._real_stdout is not None:
            sys.stdout = self._real_stdout
            self._real_stdout = None
        if self._lambda_log is not None:
            self._lambda_log.close()
            self._lambda_log = None


def load_stack_info(state_dir: Path) -> dict[str, Any]:
    """The running stack's stack.json (raises FileNotFoundError when none runs there)."""
    return dict(json.loads((state_dir / STACK_FILE).read_text()))


def client_environment(info: dict[str, Any]) -> dict[str, str]:
    """Environment for code that talks to a running local stack's AWS (admin commands)."""
    return {
        **aws_environment(info["region"], info["aws_endpoint_url"]),
        "JOBS_TABLE_NAME": info["table_name"],
        "API_KEYS_TABLE_NAME": info["api_keys_table_name"],
    }


def run(options: StackOptions, console: TextIO = sys.stdout) -> int:
    """Run the stack in the foreground until SIGINT or SIGTERM; everything it started stops."""
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    state_dir = options.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # Python warnings (Powertools' "no metrics to publish", say) belong in the log, not the console.
    logging.captureWarnings(True)
    logging.basicConfig(
        filename=state_dir / "stack.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if options.terraform and (reason := unavailable_reason()) is not None:
        print(f"seren-remote local up --terraform: {reason}", file=sys.stderr)
        return 2
    stack = LocalStack(options)
    try:
        if options.terraform:
            print(
                f"terraform apply of terraform/ (log in {state_dir}/{TERRAFORM_DIR})...",
                file=console,
                flush=True,
            )
        info = stack.start()
        print(f"API endpoint : {info['api_endpoint']}", file=console)
        print(f"API key      : {info['api_key']}  (owner {info['owner']})", file=console)
        print(f"AWS (moto)   : {info['aws_endpoint_url']}  region {info['region']}", file=console)
        print(f"State        : {state_dir}/{STACK_FILE}; logs in {state_dir}", file=console)
        print(f"export SEREN_REMOTE_API={info['api_endpoint']} SEREN_API_KEY={info['api_key']}", file=console)
        print("Ctrl-C stops the stack.", file=console, flush=True)
        stop.wait()
    finally:
        destroying = " (terraform destroy first)" if options.terraform else ""
        print(f"stopping{destroying}...", file=console, flush=True)
        stack.stop()
    return 0
