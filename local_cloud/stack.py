"""`seren-remote local up`: the whole service on one machine.

moto plays AWS's APIs; four drivers play the parts AWS plays around the code: API
Gateway (the HTTP front), the stream event source mapping (the poller), EventBridge
(the scheduler) and EC2 (the driver that runs instances' user-data). The handlers, the
worker and the engine are the production code; only the endpoints differ.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import boto3

from local_cloud.ec2_driver import INSTANCE_DIR, Ec2Driver
from local_cloud.http_front import HttpFront, parse_routes
from local_cloud.lambda_runtime import ACCOUNT_ID, LambdaFunction
from local_cloud.moto_server import MotoServer
from local_cloud.resources import DEFAULT_INSTANCE_TYPE, Resources, create_resources
from local_cloud.scheduler import Scheduler
from local_cloud.stream_poller import StreamPoller
from services.reaper import schedule as reaper_schedule

logger = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[1]
WORKER_SCRIPT = CHECKOUT / "worker" / "worker.sh"
STACK_FILE = "stack.json"
# The HTTP API's route keys, as Terraform declares them (generated from the api handler).
API_ROUTES_FILE = CHECKOUT / "terraform" / "generated" / "api_routes.json"
API_HANDLER = "services.api.handler.lambda_handler"
LAUNCHER_HANDLER = "services.launcher.handler.lambda_handler"
REAPER_HANDLER = "services.reaper.handler.lambda_handler"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@dataclass
class StackOptions:
    port: int = 8080
    state_dir: Path = Path(".local")
    max_concurrent_jobs: int = 2
    reaper_interval: float = 5.0
    # Seconds, for a laptop; the reaper's settings allow nothing shorter than these.
    heartbeat_interval: int = 2
    heartbeat_timeout: int = 10
    provisioning_grace: int = 60
    region: str = "us-east-1"
    prefix: str = "seren-local"
    owner: str = "local"
    log_level: str = "WARNING"
    # The event source mapping's settings (Terraform's defaults).
    batch_size: int = 10
    maximum_retry_attempts: int = 5
    stream_idle_wait: float = 0.5
    ec2_poll_interval: float = 1.0
    kill_grace_seconds: float = 5.0
    # How long an instance boots before its user-data runs (EC2 takes tens of seconds).
    instance_boot_seconds: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)


def handler_environment(options: StackOptions, resources: Resources) -> dict[str, str]:
    """What Terraform sets on the three functions, with local values."""
    return {
        "JOBS_TABLE_NAME": resources.jobs_table,
        "API_KEYS_TABLE_NAME": resources.api_keys_table,
        "KMS_KEY_ID": resources.kms_key_id,
        "JOB_RETENTION_DAYS": "30",
        "MAX_UNFINISHED_JOBS_PER_OWNER": "50",
        "ALLOWED_TARGET_SUFFIXES": "",
        # Only the local cloud lets jobs reach databases on loopback.
        "ALLOW_LOOPBACK_HOSTS": "true",
        "ALLOW_PRIVATE_HOSTS": "false",
        "WORKER_LOG_GROUP": resources.worker_log_group,
        "MAX_CONCURRENT_JOBS": str(options.max_concurrent_jobs),
        "LAUNCH_TEMPLATE_ID": resources.launch_template_id,
        "LAUNCH_TEMPLATE_VERSION": "$Latest",
        "SUBNET_IDS": ",".join(resources.subnet_ids),
        "DEFAULT_INSTANCE_TYPE": DEFAULT_INSTANCE_TYPE,
        "PROJECT_TAG": resources.project_tag,
        "HEARTBEAT_INTERVAL_SECONDS": str(options.heartbeat_interval),
        "HEARTBEAT_TIMEOUT_SECONDS": str(options.heartbeat_timeout),
        "PROVISIONING_GRACE_SECONDS": str(options.provisioning_grace),
        # The reaper's other thresholds at their shortest: a laptop session lasts minutes.
        "LAUNCH_LEASE_SECONDS": "30",
        "CANCEL_GRACE_SECONDS": "30",
        "PENDING_GRACE_SECONDS": "30",
        "SLOT_HOLD_GRACE_SECONDS": "60",
        "ORPHAN_GRACE_SECONDS": "60",
        "DEADLINE_GRACE_SECONDS": "30",
        "POWERTOOLS_METRICS_NAMESPACE": "SerenReplication",
        "POWERTOOLS_LOG_LEVEL": options.log_level,
        # The "instance" is this machine: a worker must never power it off.
        "WORKER_SHUTDOWN_IF_NOT_TERMINATED": "false",
        # No X-Ray daemon here.
        "POWERTOOLS_TRACE_DISABLED": "true",
        **options.extra_env,
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
        "POWERTOOLS_TRACE_DISABLED": "true",
        **FAKE_CREDENTIALS,
    }


class LocalStack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.moto = MotoServer(self.state_dir / "moto.log")
        self.resources: Resources | None = None
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

    def _start_rest(self) -> dict[str, Any]:
        options = self.options
        endpoint = self.moto.url
        os.environ.update(
            {
                **FAKE_CREDENTIALS,
                "AWS_REGION": options.region,
                "AWS_DEFAULT_REGION": options.region,
                "AWS_ENDPOINT_URL": endpoint,
            }
        )
        session = boto3.session.Session(region_name=options.region)
        clients = {name: session.client(name) for name in ("dynamodb", "kms", "ec2", "logs", "sqs")}
        resources = self.resources = create_resources(clients, prefix=options.prefix)
        os.environ.update(handler_environment(options, resources))

        from jobs import aws
        from jobs.api_keys import ApiKeyStore

        aws.reset_clients()
        self.api_key = ApiKeyStore(resources.api_keys_table).create(options.owner).key

        # Lambda sends its functions' stdout (Powertools logs, EMF metrics) to CloudWatch Logs;
        # here the whole process's stdout goes to a file while the stack runs.
        self._lambda_log = (self.state_dir / "lambda.log").open("a", buffering=1)
        self._real_stdout, sys.stdout = sys.stdout, self._lambda_log
        api = LambdaFunction(f"{options.prefix}-api", API_HANDLER, region=options.region, timeout_seconds=29)
        launcher = LambdaFunction(f"{options.prefix}-launcher", LAUNCHER_HANDLER, region=options.region)
        reaper = LambdaFunction(f"{options.prefix}-reaper", REAPER_HANDLER, region=options.region)
        for function in (api, launcher, reaper):
            function.load()  # cold starts now: a broken import fails `local up`, not a request
        from local_cloud.event_filter import matches

        self.ec2_driver = Ec2Driver(
            session.client("ec2"),
            state_dir=self.state_dir,
            region=options.region,
            instance_env=instance_environment(options, endpoint),
            poll_interval_seconds=options.ec2_poll_interval,
            kill_grace_seconds=options.kill_grace_seconds,
            boot_seconds=options.instance_boot_seconds,
        )
        self.poller = StreamPoller(
            session.client("dynamodbstreams"),
            session.client("sqs"),
            stream_arn=resources.stream_arn,
            invoke=launcher.invoke,
            matches=matches,
            function_arn=f"arn:aws:lambda:{options.region}:{ACCOUNT_ID}:function:{launcher.name}",
            dlq_url=resources.dlq_url,
            batch_size=options.batch_size,
            maximum_retry_attempts=options.maximum_retry_attempts,
            idle_wait_seconds=options.stream_idle_wait,
            on_batch=self.ec2_driver.wake,
        )
        self.scheduler = Scheduler(
            reaper.invoke,
            interval_seconds=options.reaper_interval,
            rule_name=reaper_schedule.rule_name(options.prefix),
            region=options.region,
            after_run=self._wake_all,
        )
        self.front = HttpFront(
            api.invoke,
            port=options.port,
            routes=parse_routes(json.loads(API_ROUTES_FILE.read_text())),
            on_request=self._after_request,
        )
        self.ec2_driver.start()
        self.poller.start()
        self.scheduler.start()
        self.front.start()
        info = self.info()
        self.stack_file.write_text(json.dumps(info, indent=2) + "\n")
        self.stack_file.chmod(0o600)
        return info

    def _after_request(self, method: str) -> None:
        if method not in ("GET", "HEAD", "OPTIONS"):
            self._wake_all()

    def _wake_all(self) -> None:
        if self.poller is not None:
            self.poller.wake()
        if self.ec2_driver is not None:
            self.ec2_driver.wake()

    def info(self) -> dict[str, Any]:
        assert self.resources is not None and self.front is not None
        resources = self.resources
        return {
            "api_endpoint": self.front.url,
            "api_key": self.api_key,
            "owner": self.options.owner,
            "aws_endpoint_url": self.moto.url,
            "region": self.options.region,
            "table_name": resources.jobs_table,
            "api_keys_table_name": resources.api_keys_table,
            "stream_arn": resources.stream_arn,
            "kms_key_id": resources.kms_key_id,
            "launch_template_id": resources.launch_template_id,
            "worker_log_group": resources.worker_log_group,
            "dlq_url": resources.dlq_url,
            "project_tag": resources.project_tag,
            "max_concurrent_jobs": self.options.max_concurrent_jobs,
            "reaper_interval_seconds": self.options.reaper_interval,
            "heartbeat_interval_seconds": self.options.heartbeat_interval,
            "heartbeat_timeout_seconds": self.options.heartbeat_timeout,
            "pid": os.getpid(),
            "moto_pid": self.moto.pid,
            "state_dir": str(self.state_dir),
        }

    def stop(self) -> None:
        for component in (self.front, self.scheduler, self.poller, self.ec2_driver):
            if component is not None:
                component.stop()
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
        **FAKE_CREDENTIALS,
        "AWS_REGION": info["region"],
        "AWS_DEFAULT_REGION": info["region"],
        "AWS_ENDPOINT_URL": info["aws_endpoint_url"],
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
    stack = LocalStack(options)
    try:
        info = stack.start()
        print(f"API endpoint : {info['api_endpoint']}", file=console)
        print(f"API key      : {info['api_key']}  (owner {info['owner']})", file=console)
        print(f"AWS (moto)   : {info['aws_endpoint_url']}  region {info['region']}", file=console)
        print(f"State        : {state_dir}/{STACK_FILE}; logs in {state_dir}", file=console)
        print(f"export SEREN_REMOTE_API={info['api_endpoint']} SEREN_API_KEY={info['api_key']}", file=console)
        print("Ctrl-C stops the stack.", file=console, flush=True)
        stop.wait()
    finally:
        print("stopping...", file=console, flush=True)
        stack.stop()
    return 0
