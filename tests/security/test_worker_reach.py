"""What a compromised worker may do to another job, judged on the deployed (Terraform-declared)
policies by tests/security/iam_eval.py: two running jobs, A on instance A and B on instance B;
every call below is made with instance A's role credentials against job B."""

from __future__ import annotations

import pytest
from iam_eval import (
    ACCOUNT,
    KEY_ARNS,
    REFERENCES,
    REGION,
    ROLE_ARNS,
    WORKER_LOG_GROUP,
    Request,
    allowed,
    resource_context,
    rules,
)
from terraform_config import TerraformConfig, load

from jobs.crypto import CONTEXT_PURPOSE
from jobs.job_logs import WRITER_TAG, job_log_group
from jobs.worker_identity import worker_user_id

JOB_A, JOB_B = "11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "22222222-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
INSTANCE_A = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0aaaaaaaaaaaaaaaa"
INSTANCE_B = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0bbbbbbbbbbbbbbbb"
TABLE = REFERENCES["aws_dynamodb_table.jobs.arn"]
WORKER = f"arn:aws:sts::{ACCOUNT}:assumed-role/replication-worker/i-0aaaaaaaaaaaaaaaa"
WORKER_ROLE_ID = "AROAEXAMPLEWORKERROLE"
# The caller ids of instance A's and B's role sessions (aws:userid): the keys of their report
# items, and the tags the launcher put on each job's log group.
USER_A = worker_user_id(WORKER_ROLE_ID, "i-0aaaaaaaaaaaaaaaa")
USER_B = worker_user_id(WORKER_ROLE_ID, "i-0bbbbbbbbbbbbbbbb")
OUR_TAG = {"ec2:ResourceTag/ManagedBy": "replication-jobs"}
# What worker/reports.py writes, whatever the report: the report and its expiry.
REPORT_WRITE = ["job_id", "report", "expires_at"]
# What the worker's writes to a job item used to be: a start, a heartbeat, an outcome, a
# checkpoint, a hand-back. Denied now on every job item, its own included.
JOB_ITEM_WRITES = [
    ["status", "updated_at", "started_at", "heartbeat_at", "progress", "active_status", "instance_id",
     "attempt"],
    ["heartbeat_at", "progress", "updated_at", "status", "instance_id", "attempt"],
    ["status", "updated_at", "completed_at", "error", "exit_code", "progress", "active_status",
     "credentials", "instance_credentials", "request_fingerprint", "instance_id", "attempt"],
    ["checkpoint", "updated_at", "status", "instance_id", "attempt"],
    ["lost_attempts", "checkpoint", "progress", "status", "active_status", "instance_id", "attempt"],
]  # fmt: skip


@pytest.fixture(scope="module")
def tf() -> TerraformConfig:
    return load()


def worker_may(tf: TerraformConfig, action: str, resource: str, **context: str | list[str]) -> bool:
    identity = rules(tf, "worker")
    request = Request(
        principal=ROLE_ARNS["worker"], action=action, resource=resource, context={
            "ec2:SourceInstanceARN": INSTANCE_A, "aws:PrincipalArn": ROLE_ARNS["worker"],
            "aws:userid": USER_A, **context
        }
    )  # fmt: skip
    if action.startswith("kms:"):
        # Same account: the key policy decides (it grants the account root no cryptography).
        return allowed(rules(tf, "credentials_key"), request)
    return allowed(identity, request)


def bound_context(job_id: str, instance: str | None) -> dict[str, str | list[str]]:
    """The encryption context of a job's credentials: the API's, or the one the launcher
    re-encrypted them under for the instance it started."""
    context: dict[str, str | list[str]] = {
        "kms:EncryptionContext:job_id": job_id,
        "kms:EncryptionContext:purpose": CONTEXT_PURPOSE,
        "kms:EncryptionContextKeys": ["job_id", "purpose"],
    }
    if instance is not None:
        context["kms:EncryptionContext:instance_arn"] = instance
        context["kms:EncryptionContextKeys"] = ["job_id", "purpose", "instance_arn"]
    return context


def job_log_stream(job_id: str) -> str:
    group = job_log_group(WORKER_LOG_GROUP, job_id)
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:{job_id}"


def tagged_for(user_id: str) -> dict[str, str | list[str]]:
    """The request context of a call on a job's log group tagged for `user_id`."""
    return {f"aws:ResourceTag/{WRITER_TAG}": user_id}


def item_update(attributes: list[str], job_id: str) -> dict[str, str | list[str]]:
    return {"dynamodb:LeadingKeys": [job_id], "dynamodb:Attributes": attributes}


def test_the_worker_can_do_its_own_jobs_work(tf: TerraformConfig) -> None:
    """The control: without this, every denial below would prove nothing."""
    assert worker_may(tf, "dynamodb:UpdateItem", TABLE, **item_update(REPORT_WRITE, USER_A))
    assert worker_may(tf, "dynamodb:GetItem", TABLE, **{"dynamodb:LeadingKeys": [JOB_A]})
    assert worker_may(tf, "ec2:TerminateInstances", INSTANCE_A, **OUR_TAG)
    assert worker_may(tf, "kms:Decrypt", KEY_ARNS["credentials"], **bound_context(JOB_A, INSTANCE_A))
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert worker_may(tf, action, job_log_stream(JOB_A), **tagged_for(USER_A))


@pytest.mark.parametrize(
    "attribute",
    ["log_stream", "log_group", "log_url", "owner", "max_attempts", "launched_at", "expires_at", "source"],
)
def test_the_worker_cannot_rewrite_what_is_not_its_own(tf: TerraformConfig, attribute: str) -> None:
    """Where a job's logs are, whose it is, which attempt: a worker pointed B's log_stream at
    another job, or B's log_url at a phishing page. Denied on any item, its own included."""
    for job_id in (JOB_B, JOB_A):
        update = item_update(["updated_at", attribute], job_id)
        assert not worker_may(tf, "dynamodb:UpdateItem", TABLE, **update)


def test_the_worker_cannot_touch_the_slot_ledger(tf: TerraformConfig) -> None:
    ledger = {"dynamodb:LeadingKeys": ["control#slots"]}
    assert not worker_may(tf, "dynamodb:GetItem", TABLE, **ledger)
    assert not worker_may(tf, "dynamodb:UpdateItem", TABLE, **ledger, **{"dynamodb:Attributes": ["status"]})


def test_the_worker_cannot_decrypt_under_a_context_that_names_no_job(tf: TerraformConfig) -> None:
    assert not worker_may(
        tf, "kms:Decrypt", KEY_ARNS["credentials"],
        **{"kms:EncryptionContext:purpose": CONTEXT_PURPOSE, "kms:EncryptionContextKeys": ["purpose"]},
    )  # fmt: skip
    assert not worker_may(tf, "kms:Encrypt", KEY_ARNS["credentials"])
    assert not worker_may(tf, "kms:GenerateMac", KEY_ARNS["request_mac"])


def test_the_worker_cannot_decrypt_another_jobs_credentials(tf: TerraformConfig) -> None:
    """The attack that was reproduced: B's ciphertext read from B's item and decrypted under
    B's context. Bound to instance B, it names an instance that is not the caller."""
    key = KEY_ARNS["credentials"]
    assert not worker_may(tf, "kms:Decrypt", key, **bound_context(JOB_B, INSTANCE_B))
    # Nor the API's ciphertext of either job, which names no instance at all.
    assert not worker_may(tf, "kms:Decrypt", key, **bound_context(JOB_B, None))
    assert not worker_may(tf, "kms:Decrypt", key, **bound_context(JOB_A, None))
    # Nor can it re-encrypt anything for itself.
    for action in ("kms:ReEncryptFrom", "kms:ReEncryptTo"):
        assert not worker_may(tf, action, key, **bound_context(JOB_B, INSTANCE_A))


def test_only_the_launcher_and_reaper_bind_credentials_to_an_instance(tf: TerraformConfig) -> None:
    key_policy = rules(tf, "credentials_key")
    same_key = {"kms:ReEncryptOnSameKey": "true"}
    for role in ("launcher", "reaper"):
        source = Request(ROLE_ARNS[role], "kms:ReEncryptFrom", KEY_ARNS["credentials"], {
            **bound_context(JOB_B, None), **same_key})  # fmt: skip
        target = Request(ROLE_ARNS[role], "kms:ReEncryptTo", KEY_ARNS["credentials"], {
            **bound_context(JOB_B, INSTANCE_B), **same_key})  # fmt: skip
        assert allowed(key_policy, source) and allowed(key_policy, target)
    api = Request(
        ROLE_ARNS["api"], "kms:ReEncryptTo", KEY_ARNS["credentials"], bound_context(JOB_B, INSTANCE_A)
    )
    assert not allowed(key_policy, api)


def test_the_worker_cannot_learn_another_jobs_id(tf: TerraformConfig) -> None:
    """Every call on another job names its id, a random UUID. No call lists or searches the
    places job ids are: the log streams (named by job id), the table and its indexes, the
    instances (tagged with their job), the metrics."""
    group = REFERENCES["aws_cloudwatch_log_group.workers.arn"]
    for action in (
        "logs:DescribeLogStreams",
        "logs:FilterLogEvents",
        "logs:StartQuery",
        "logs:DescribeLogGroups",
    ):
        for groups in (group, f"{group}/*"):  # the workers' group, and each job's own
            assert not worker_may(tf, action, f"{groups}:*")
    stream = f"{group}:log-stream:{JOB_B}"
    assert not worker_may(tf, "logs:GetLogEvents", stream)
    for action in ("dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:PartiQLSelect"):
        for resource in (TABLE, f"{TABLE}/index/owner-index"):
            assert not worker_may(tf, action, resource)
    assert not worker_may(tf, "dynamodb:DescribeStream", REFERENCES["aws_dynamodb_table.jobs.stream_arn"])
    for action in (
        "ec2:DescribeInstances",
        "ec2:DescribeTags",
        "cloudwatch:ListMetrics",
        "cloudwatch:GetMetricData",
    ):
        assert not worker_may(tf, action, "*")


def test_the_boot_log_agent_writes_only_streams_named_by_an_instance(tf: TerraformConfig) -> None:
    group = REFERENCES["aws_cloudwatch_log_group.workers.arn"]
    agent = [rule for rule in rules(tf, "worker") if rule.sid == "PlatformCloudWatchAgentLogs"]
    boot = Request(
        ROLE_ARNS["worker"], "logs:PutLogEvents", f"{group}:log-stream:i-0bbbbbbbbbbbbbbbb/cloud-init-output"
    )
    job = Request(ROLE_ARNS["worker"], "logs:PutLogEvents", f"{group}:log-stream:{JOB_B}")
    assert allowed(agent, boot)
    assert not allowed(agent, job)


def test_the_worker_cannot_write_another_jobs_status_or_progress(tf: TerraformConfig) -> None:
    """Status, heartbeat, progress, error, checkpoint: a worker reports them in its own report
    item, which the control plane copies only into the job assigned to that instance."""
    for attributes in JOB_ITEM_WRITES:
        assert not worker_may(tf, "dynamodb:UpdateItem", TABLE, **item_update(attributes, JOB_B))
        assert not worker_may(tf, "dynamodb:UpdateItem", TABLE, **item_update(attributes, JOB_A))
    # B's report item, whatever A's request says of its own identity.
    assert not worker_may(tf, "dynamodb:UpdateItem", TABLE, **item_update(REPORT_WRITE, USER_B))
    assert not worker_may(
        tf, "dynamodb:UpdateItem", TABLE, **item_update(REPORT_WRITE, USER_A), **{"aws:userid": "x"}
    )
    # Its own report item, but more than the report: nothing else of an item is the worker's.
    assert not worker_may(tf, "dynamodb:UpdateItem", TABLE, **item_update([*REPORT_WRITE, "status"], USER_A))
    # Two keys at once, one of them B's.
    both = {"dynamodb:LeadingKeys": [USER_A, USER_B], "dynamodb:Attributes": REPORT_WRITE}
    assert not worker_may(tf, "dynamodb:UpdateItem", TABLE, **both)
    for action in ("dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"):
        assert not worker_may(tf, action, TABLE, **item_update(REPORT_WRITE, USER_A))


@pytest.mark.parametrize("action", ["logs:CreateLogStream", "logs:PutLogEvents"])
def test_the_worker_cannot_write_another_jobs_log_stream(tf: TerraformConfig, action: str) -> None:
    """Each job's logs are a group of its own, tagged with the caller id of the instance
    launched for it; the worker's writes need that tag to equal its own caller id."""
    # B's group, tagged for B's instance; and the stream named B in A's own group.
    assert not worker_may(tf, action, job_log_stream(JOB_B), **tagged_for(USER_B))
    # A group no launch tagged (or whose tag the request does not show).
    assert not worker_may(tf, action, job_log_stream(JOB_B))
    # A's job relaunched on another instance: the tag moved, the lost instance A cannot write.
    assert not worker_may(tf, action, job_log_stream(JOB_A), **tagged_for(USER_B))
    # The tag names A, but the caller is not A (another role's session on an instance A-like id,
    # or the credentials used where the caller id differs).
    other_role = worker_user_id("AROAOTHERROLEEXAMPLE", "i-0aaaaaaaaaaaaaaaa")
    assert not worker_may(
        tf, action, job_log_stream(JOB_A), **tagged_for(USER_A), **{"aws:userid": other_role}
    )
    # Nor the workers' shared group (boot logs) under a job's stream name.
    shared = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{WORKER_LOG_GROUP}:log-stream:{JOB_B}"
    assert not worker_may(tf, action, shared, **tagged_for(USER_A))


def test_the_api_reads_each_jobs_own_log_group(tf: TerraformConfig) -> None:
    api = rules(tf, "api")
    assert allowed(api, Request(ROLE_ARNS["api"], "logs:GetLogEvents", job_log_stream(JOB_B)))
    boot = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{WORKER_LOG_GROUP}:log-stream:i-0bbbbbbbbbbbbbbbb"
    assert not allowed(api, Request(ROLE_ARNS["api"], "logs:GetLogEvents", boot))


def test_only_the_launch_prepares_a_jobs_log_group(tf: TerraformConfig) -> None:
    """The launcher and reaper create and tag the job's group; the worker can neither tag a
    group for itself nor delete one."""
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{job_log_group(WORKER_LOG_GROUP, JOB_B)}"
    for principal in ("launcher", "reaper"):
        for action in ("logs:CreateLogGroup", "logs:TagResource", "logs:PutRetentionPolicy"):
            assert allowed(rules(tf, principal), Request(ROLE_ARNS[principal], action, group))
    assert allowed(rules(tf, "reaper"), Request(ROLE_ARNS["reaper"], "logs:DeleteLogGroup", group))
    for action in (
        "logs:TagResource",
        "logs:TagLogGroup",
        "logs:UntagResource",
        "logs:CreateLogGroup",
        "logs:DeleteLogGroup",
        "logs:DeleteLogStream",
        "logs:PutRetentionPolicy",
    ):
        assert not worker_may(tf, action, group, **tagged_for(USER_A))


def test_the_worker_cannot_read_another_workers_report(tf: TerraformConfig) -> None:
    assert not worker_may(tf, "dynamodb:GetItem", TABLE, **{"dynamodb:LeadingKeys": [USER_B]})


# Still open: every name that could carry the caller's instance contains ':', which log
# stream and group names may not. strict: the day it is closed, this fails and is turned
# into a plain assertion.


def test_the_worker_cannot_terminate_another_instance(tf: TerraformConfig) -> None:
    """Instance B carries the deployment's tag too: only the caller's own id passes."""
    assert not worker_may(tf, "ec2:TerminateInstances", INSTANCE_B, **OUR_TAG)
    # Nor can the request name instance A's id for B: the id comes from the resource.
    assert not worker_may(
        tf, "ec2:TerminateInstances", INSTANCE_B, **OUR_TAG, **{"ec2:InstanceID": "i-0aaaaaaaaaaaaaaaa"}
    )
    # The role's credentials used off the instance: the request names no caller instance.
    off_instance = Request(ROLE_ARNS["worker"], "ec2:TerminateInstances", INSTANCE_A, OUR_TAG)
    assert not allowed(rules(tf, "worker"), off_instance)


def test_the_evaluator_derives_the_instance_id_from_the_resource() -> None:
    assert resource_context(INSTANCE_B) == {"ec2:InstanceID": "i-0bbbbbbbbbbbbbbbb"}
    assert resource_context(TABLE) == {}


def test_the_worker_cannot_terminate_instances_that_are_not_ours(tf: TerraformConfig) -> None:
    assert not worker_may(tf, "ec2:TerminateInstances", INSTANCE_B)


def test_the_policies_name_the_groups_and_tag_the_code_uses(tf: TerraformConfig) -> None:
    assert tf.locals["job_log_writer_tag_key"] == WRITER_TAG
    assert tf.locals["job_log_groups_arn"] == "${aws_cloudwatch_log_group.workers.arn}/*"
    assert job_log_group(WORKER_LOG_GROUP, JOB_A) == f"{WORKER_LOG_GROUP}/{JOB_A}"


def test_cloudwatch_logs_may_encrypt_each_jobs_group_with_the_data_key(tf: TerraformConfig) -> None:
    """The launch creates each job's group with the data key, as Terraform does the workers' group."""
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{job_log_group(WORKER_LOG_GROUP, JOB_A)}"
    logs = f"logs.{REGION}.amazonaws.com"
    for context_arn, expected in ((group, True), (f"arn:aws:logs:{REGION}:444455556666:log-group:x", False)):
        request = Request(
            logs, "kms:GenerateDataKey", KEY_ARNS["data"], {"kms:EncryptionContext:aws:logs:arn": context_arn}
        )
        assert allowed(rules(tf, "data_key"), request) is expected
