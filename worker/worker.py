"""The worker's main line: `python -m worker JOB_ID` (worker.sh runs it from user-data).

read the job -> ours and provisioning? -> decrypt, re-check resolved hosts -> running ->
run the engine (heartbeats, progress, cancel, deadline, SIGTERM) -> metrics -> flush logs
-> outcome (applied with the credentials' wipe) -> terminate the instance. worker.sh
terminates it again (`python -m worker.terminate`), whatever this process did or how it
ended. Every status, heartbeat and checkpoint is a report the control plane applies
(worker.reports): the worker writes no job item.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from types import FrameType

from botocore.exceptions import BotoCoreError, ClientError

from jobs import clock
from jobs.attempts import LossKind
from jobs.crypto import CredentialCipher, Credentials
from jobs.job_logs import LogWriter, job_log_group
from jobs.observability import worker_logger
from jobs.policy import ConnectionPolicy, HostNotAllowed
from jobs.progress import Progress
from jobs.record import INSTANCE_CREDENTIALS_ATTRIBUTE, Job
from jobs.redact import redact
from jobs.spec import Command
from jobs.states import JobStatus
from jobs.urls import parse_url
from worker import metadata, metrics, serendb
from worker.addresses import Resolver, pin, system_resolver
from worker.engines import Engine, EngineJob, Invocation, select_engine
from worker.engines.base import job_secrets
from worker.output import EngineOutput, open_local_log
from worker.process import EngineProcess
from worker.reports import Fate, Outcome, Reports
from worker.schedule import WriteSchedule
from worker.serendb import ConsoleClient
from worker.settings import Settings
from worker.terminate import terminate_self

logger = worker_logger()

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 64
TICK_SECONDS = 0.2
INTERRUPTED = "the instance is shutting down (SIGTERM to the worker)"
# A shutdown sends SIGTERM to every process of the instance at once (systemd stops the whole
# control group), so the engine may be gone before the worker has handled its own: an engine
# ended by SIGTERM waits this long for the worker's before it counts as an engine failure.
SHUTDOWN_SIGNAL_WAIT_SECONDS = 2.0
EXIT_SIGTERM = 128 + signal.SIGTERM


@dataclass(frozen=True)
class HandBack:
    """The attempt ends without an outcome: the instance is going away (a Spot notice, a
    shutdown). The job goes back to the control plane for its next attempt."""

    kind: LossKind
    reason: str


class Beat(StrEnum):
    """What one heartbeat found."""

    ALIVE = "alive"  # written: the job runs on
    CANCEL_REQUESTED = "cancel_requested"  # written, and a cancel was asked for
    NOT_WRITTEN = "not_written"  # the write failed after its retries: try at the next beat
    LOST = "lost"  # the job is no longer ours: ended or relaunched elsewhere


@dataclass
class RunStats:
    item_writes: int = 0
    failed_writes: int = 0


def checked_addresses(
    credentials: Credentials, policy: ConnectionPolicy, resolve: Resolver = system_resolver
) -> tuple[str | None, str | None]:
    """The API checked the names; the worker resolves each once, checks every address, and
    returns the (source, target) addresses the engine must connect to."""
    source = pin(
        parse_url(credentials.source_url, field="source_url"), policy, role="source", resolve=resolve
    )
    target = pin(
        parse_url(credentials.target_url, field="target_url"), policy, role="target", resolve=resolve
    )
    return source.hostaddr, target.hostaddr


def job_deadline_seconds(job: Job, settings: Settings) -> int:
    limit = job.options.timeout_seconds
    if settings.max_job_runtime_seconds is not None:
        limit = min(limit, settings.max_job_runtime_seconds)
    return limit


def exit_code_of(returncode: int) -> int:
    """Shell convention: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Worker:
    def __init__(
        self, settings: Settings, job_id: str, instance_id: str, interrupted: threading.Event
    ) -> None:
        self.settings = settings
        self.job_id = job_id
        self.instance_id = instance_id
        self.interrupted = interrupted
        self.reports = Reports(
            job_id,
            instance_id,
            role_id=settings.worker_role_id,
            table_name=settings.jobs_table_name,
            heartbeat_attempts=settings.heartbeat_write_max_attempts,
            status_attempts=settings.status_write_max_attempts,
            wait_seconds=settings.report_wait_seconds,
            poll_seconds=settings.report_poll_seconds,
            shutting_down=interrupted,
        )
        self.secrets: list[str] = []
        self.stats = RunStats()
        self.output: EngineOutput | None = None

    # -- the whole job ---------------------------------------------------------------

    def run(self) -> None:
        job = self.reports.reader.get(self.job_id)
        if job is None or job.status.is_terminal or job.instance_id != self.instance_id:
            logger.info(
                "nothing to do for this instance",
                extra={"status": job.status.value if job else None, "assigned_to": job and job.instance_id},
            )
            return
        self.reports.bind(job)
        if job.status in (JobStatus.RUNNING, JobStatus.CANCELLING):
            # A worker process on this instance already ran it and is gone: its engine with it.
            self._end(job, Outcome(JobStatus.FAILED, "the worker restarted while the job was running"))
            return
        if job.status is not JobStatus.PROVISIONING:
            logger.info("job not yet provisioned for this instance", extra={"status": job.status.value})
            return
        try:
            self._run_provisioned(job)
        except Exception as exc:
            # Not logger.exception: a traceback may quote a decrypted URL.
            logger.error("worker failed", extra={"reason": self._reason(exc), "traceback": self.traceback()})
            self._end(job, Outcome(JobStatus.FAILED, self._reason(exc)))

    def _run_provisioned(self, job: Job) -> None:
        started = time.monotonic()
        # Bound by the launcher to this instance: no other instance may decrypt it.
        ciphertext = self.reports.reader.get_credentials(
            self.job_id, attribute=INSTANCE_CREDENTIALS_ATTRIBUTE
        )
        if ciphertext is None:
            self._end(job, Outcome(JobStatus.FAILED, "the job's credentials are gone"))
            return
        credentials = CredentialCipher().decrypt(self.job_id, ciphertext, instance=metadata.instance_arn())
        engine_job = EngineJob(
            command=Command(job.command),
            source_url=credentials.source_url,
            target_url=credentials.target_url,
            filter=job.filter,
            options=job.options,
            checkpoint=dict(job.checkpoint),
        )
        self.secrets = [*job_secrets(engine_job), credentials.seren_api_key or ""]
        try:
            source_hostaddr, target_hostaddr = checked_addresses(credentials, self.settings.connection_policy)
        except HostNotAllowed as exc:
            self._end(job, Outcome(JobStatus.FAILED, str(exc)))
            return
        engine = select_engine(self.settings.engine, private_hosts_allowed=self.settings.allow_private_hosts)
        invocation = engine.invocation(
            replace(engine_job, source_hostaddr=source_hostaddr, target_hostaddr=target_hostaddr)
        )
        self.secrets = list(invocation.secrets)
        if credentials.seren_api_key:
            self.secrets.append(credentials.seren_api_key)
        self.output = EngineOutput(
            engine.parser(invocation),
            LogWriter(
                job_log_group(self.settings.worker_log_group, self.job_id),
                self.job_id,
                secrets=self.secrets,
                flush_interval_seconds=self.settings.log_flush_interval_seconds,
            ),
            open_local_log(self.settings.local_log_dir, self.job_id),
            self.secrets,
            flush_interval_seconds=self.settings.log_flush_interval_seconds,
        )
        self.output.seed_checkpoint(job.checkpoint)
        self.output.set_progress(Progress.message_only(f"starting {job.command} ({engine.name} engine)"))
        now_iso = clock.now_iso()
        start_report = self.reports.start(
            progress=self.output.progress, now_iso=now_iso, started_at=job.started_at or now_iso
        )
        self.stats.item_writes += 1
        if not start_report.ok:
            logger.info(
                "the job did not start on this instance; leaving it alone", extra={"fate": start_report.fate}
            )
            return
        self.output.take_progress()
        refusal = self._prepare_project(job, credentials.seren_api_key)
        if refusal is not None:
            self._end(job, refusal, duration=time.monotonic() - started, engine_name=engine.name)
            return
        if job.lost_attempts:
            earlier = "; ".join(lost.describe() for lost in job.lost_attempts)
            self.output.note(f"attempt {job.attempt}, after earlier attempts were lost: {earlier}")
        outcome = self._supervise(job, engine, invocation, started)
        self._end(job, outcome, duration=time.monotonic() - started, engine_name=engine.name)

    def _prepare_project(self, job: Job, seren_api_key: str | None) -> Outcome | None:
        """A SerenDB project target's console steps; the failure when one fails."""
        project = job.project
        if project is None:
            return None
        output = self.output
        assert output is not None
        if not seren_api_key:
            return Outcome(JobStatus.FAILED, "the job's SerenDB project target has no seren_api_key")
        client = ConsoleClient(
            self.settings.seren_console_url, seren_api_key, self.settings.seren_console_timeout_seconds
        )
        try:
            serendb.prepare_target(
                client,
                project,
                Command(job.command),
                enable_sync=job.options.enable_sync,
                note=output.note,
            )
        except serendb.ConsoleError as exc:
            return Outcome(JobStatus.FAILED, redact(str(exc), self.secrets))
        return None

    # -- the engine --------------------------------------------------------------------

    def _supervise(
        self, job: Job, engine: Engine, invocation: Invocation, started: float
    ) -> Outcome | HandBack | None:
        """Run the engine to an outcome; None when the job stopped being ours."""
        output = self.output
        assert output is not None
        settings = self.settings
        limit = job_deadline_seconds(job, settings)
        deadline = started + limit
        schedule = WriteSchedule(
            heartbeat_interval=settings.heartbeat_interval_seconds,
            progress_min_interval=settings.progress_min_interval_seconds,
            writes_per_hour=settings.item_writes_per_hour,
            start=time.monotonic(),
        )
        output.note(f"starting the {engine.name} engine: {job.command}")
        process = EngineProcess(invocation.argv, invocation.env, output.handle_line, invocation.stdin)
        logger.info("engine started", extra={"engine": engine.name, "pid": process.pid})
        finished = False
        spot_checked = time.monotonic()
        try:
            while True:
                # The worker's own SIGTERM first: the same shutdown may have ended the engine too.
                if self.interrupted.is_set():
                    return self._hand_back(process, output, HandBack(LossKind.INTERRUPTED, INTERRUPTED))
                if process.exited():
                    code = process.finish()
                    finished = True
                    if self._shutting_down(code):
                        output.note("the engine was stopped by the shutdown; the job goes to a new instance")
                        return HandBack(LossKind.INTERRUPTED, INTERRUPTED)
                    return self._exit_outcome(engine, code)
                now = time.monotonic()
                if now - spot_checked >= settings.spot_notice_poll_seconds:
                    spot_checked = now
                    notice = metadata.spot_interruption()
                    if notice is not None:
                        loss = HandBack(LossKind.INTERRUPTED, f"Spot interruption notice: {notice}")
                        return self._hand_back(process, output, loss)
                self._save_checkpoint(output, process)
                if now >= deadline:
                    message = f"the job ran longer than its limit of {limit} seconds"
                    return self._stop(process, output, Outcome(JobStatus.TIMEOUT, message))
                if schedule.due(now, output.progress_pending) is not None:
                    schedule.wrote(now)
                    beat = self._beat(output)
                    if beat is Beat.LOST:
                        output.note("the job was ended elsewhere; stopping the engine")
                        self._stop(process, output, None)
                        return None
                    if beat is Beat.CANCEL_REQUESTED:
                        return self._stop(
                            process, output, Outcome(JobStatus.CANCELLED, "cancelled on request")
                        )
                output.flush_if_due()
                self.interrupted.wait(TICK_SECONDS)
        finally:
            if not finished:
                process.stop(0)

    def _hand_back(self, process: EngineProcess, output: EngineOutput, loss: HandBack) -> HandBack:
        output.note(f"stopping the engine: {loss.reason}; the job goes to a new instance")
        process.stop(self.settings.engine_stop_grace_seconds)
        return loss

    def _shutting_down(self, returncode: int) -> bool:
        """Whether an engine that ended by itself was ended by the instance's shutdown: it
        died of SIGTERM (the pg engine exits 143 on it) and the worker's own follows."""
        if exit_code_of(returncode) != EXIT_SIGTERM:
            return False
        return self.interrupted.wait(SHUTDOWN_SIGNAL_WAIT_SECONDS)

    def _save_checkpoint(self, output: EngineOutput, process: EngineProcess) -> None:
        """A database finished (or started): record it at once, a later attempt resumes from it.
        The engine may wait for the acknowledgement (before it creates a target database)."""
        taken = output.take_checkpoint()
        if taken is None:
            return
        checkpoint, events = taken
        self.stats.item_writes += 1
        try:
            result = self.reports.save_checkpoint(checkpoint)
        except (BotoCoreError, ClientError) as exc:
            self.stats.failed_writes += 1
            logger.warning("checkpoint not written; trying again", extra={"reason": str(exc)})
            output.keep_checkpoint_pending()
            return
        if result.ok:
            process.acknowledge(events)
        elif result.fate is Fate.UNKNOWN:
            output.keep_checkpoint_pending()
        # else the job moved on: the next heartbeat stops the engine

    def _beat(self, output: EngineOutput) -> Beat:
        """One heartbeat, with the pending progress."""
        progress = output.take_progress()
        self.stats.item_writes += 1
        try:
            job = self.reports.beat(clock.now_iso(), progress)
        except (BotoCoreError, ClientError) as exc:
            self.stats.failed_writes += 1
            logger.warning("heartbeat failed; trying again at the next one", extra={"reason": str(exc)})
            if progress is not None:
                output.set_progress(progress)  # not written: keep it pending
            return Beat.NOT_WRITTEN
        if job is None or not self.reports.ours(job) or job.status.is_terminal:
            return Beat.LOST
        return Beat.CANCEL_REQUESTED if job.status is JobStatus.CANCELLING else Beat.ALIVE

    def _stop(self, process: EngineProcess, output: EngineOutput, outcome: Outcome | None) -> Outcome | None:
        if outcome is not None:
            output.note(f"stopping the engine: {outcome.error}")
        code = process.stop(self.settings.engine_stop_grace_seconds)
        if outcome is None:
            return None
        return Outcome(outcome.status, outcome.error, exit_code_of(code))

    def _exit_outcome(self, engine: Engine, returncode: int) -> Outcome:
        if returncode == 0:
            return Outcome(JobStatus.COMPLETED, exit_code=0)
        assert self.output is not None
        error = f"{engine.exit_message(returncode)}: {self.output.failure_summary()}"
        return Outcome(JobStatus.FAILED, redact(error, self.secrets), exit_code_of(returncode))

    # -- the end -----------------------------------------------------------------------

    def _end(
        self,
        job: Job,
        outcome: Outcome | HandBack | None,
        *,
        duration: float | None = None,
        engine_name: str = "",
    ) -> None:
        """The end, in order: metrics, logs, outcome (if the job is still ours). Each step
        runs even if the one before failed.

        The outcome is the last word: once it is applied the launcher may terminate this
        instance and hand its slot to the next job, and a client that sees `failed` can read
        the complete log at once. Applying it also wipes the credentials.
        """
        if isinstance(outcome, HandBack):
            self._end_attempt(job, outcome)
            return
        output = self.output
        progress = output.progress if output is not None else Progress()

        def send_metrics() -> None:
            if outcome is not None and duration is not None:
                metrics.publish(
                    self.settings.metrics_namespace,
                    metrics.job_metrics(
                        command=job.command,
                        engine=engine_name,
                        outcome=outcome.status.value,
                        duration_seconds=duration,
                        bytes_copied=progress.bytes_copied,
                    ),
                )

        def flush_logs() -> None:
            if output is not None:
                if outcome is not None:
                    output.note(f"job {outcome.status}" + (f": {outcome.error}" if outcome.error else ""))
                output.close()

        def write_outcome() -> None:
            if outcome is None:
                return
            self.stats.item_writes += 1
            try:
                result = self.reports.finish(outcome, progress if output is not None else None)
            except (BotoCoreError, ClientError):
                self.stats.failed_writes += 1
                raise
            if not result.ok:
                logger.info(
                    "outcome not applied: the job was ended elsewhere"
                    if result.fate is Fate.REFUSED
                    else "outcome not applied yet; the control plane applies it when it comes",
                    extra={"status": result.job.status.value if result.job else None},
                )

        steps: list[tuple[str, Callable[[], None], str]] = [
            ("metrics", send_metrics, "metrics not sent"),
            ("logs", flush_logs, "logs not flushed"),
            ("outcome", write_outcome, "outcome not written; the reaper will end the job"),
        ]
        for name, step, failure in steps:
            try:
                step()
            except (BotoCoreError, ClientError) as exc:
                logger.error(failure, extra={"step": name, "reason": str(exc)})
        logger.info(
            "job finished",
            extra={
                "outcome": outcome.status.value if outcome else None,
                "item_writes": self.stats.item_writes,
                "failed_writes": self.stats.failed_writes,
            },
        )

    def _end_attempt(self, job: Job, loss: HandBack) -> None:
        """Hand the job back with this attempt's reason and the checkpoint. The credentials
        stay: the next attempt needs them."""
        output = self.output
        assert output is not None
        output.note(f"attempt {job.attempt} handed back: {loss.reason}")
        output.close()
        self.stats.item_writes += 1
        try:
            result = self.reports.hand_back(loss.kind, loss.reason, output.checkpoint, output.progress)
        except (BotoCoreError, ClientError) as exc:
            self.stats.failed_writes += 1
            logger.error(
                "hand-back not written; the reaper will find the lost attempt", extra={"reason": str(exc)}
            )
            return
        logger.info(
            "attempt handed back" if result.ok else f"hand-back not applied ({result.fate})",
            extra={"reason": loss.reason, "status": result.job.status.value if result.job else None},
        )

    def _reason(self, exc: BaseException) -> str:
        return redact(f"worker error: {type(exc).__name__}: {exc}", self.secrets)[:1000]

    def traceback(self) -> str:
        """The exception being handled, redacted."""
        return redact(traceback.format_exc(), self.secrets)


def _install_signal_handlers(interrupted: threading.Event) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        interrupted.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].strip():
        print("usage: python -m worker JOB_ID", file=sys.stderr)
        return EXIT_USAGE
    job_id = args[0].strip()
    logger.append_keys(job_id=job_id)
    interrupted = threading.Event()
    _install_signal_handlers(interrupted)
    worker: Worker | None = None
    try:
        instance_id = metadata.instance_id()
        logger.append_keys(instance_id=instance_id)
        worker = Worker(Settings.from_environment(), job_id, instance_id, interrupted)
        worker.run()
    except Exception:
        # No instance id, no settings, or the first read or the failure write itself
        # failed: nothing more can be written. worker.sh terminates the instance next.
        logger.error(
            "worker failed before it could record an outcome",
            extra={"traceback": worker.traceback() if worker else traceback.format_exc()},
        )
        return EXIT_FAILED
    # The job's last write is done: end the instance now, not after this interpreter's
    # teardown and a new one's start-up for worker.sh's own terminate (half a second or more).
    terminate_self(instance_id, attempts=1)
    return EXIT_OK
