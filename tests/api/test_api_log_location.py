"""Where a job's logs are is derived from its id, never read from its item: a worker can write
an item, and once pointed another job's log stream at it (the owner then read another
tenant's logs) and set a phishing `log_url` that GET showed."""

from __future__ import annotations

from jobs.states import JobStatus
from tests.support.api import JOBS_TABLE, V1_BODY, ApiWorld


def test_a_forged_log_location_in_the_item_is_ignored(world: ApiWorld) -> None:
    alice_job = world.alice.submit(V1_BODY).body["job_id"]
    bob_job = world.bob.submit(V1_BODY).body["job_id"]
    with world.job_log_writer(bob_job) as writer:
        writer.write("bob's private line")
    with world.job_log_writer(alice_job) as writer:
        writer.write("alice's own line")
    world.store.transition(alice_job, [JobStatus.PENDING], JobStatus.FAILED, set_fields={"started_at": "x"})
    # What a compromised worker wrote into alice's item.
    world.dynamodb.update_item(
        TableName=JOBS_TABLE,
        Key={"job_id": {"S": alice_job}},
        UpdateExpression="SET log_group = :g, log_stream = :s, log_url = :u",
        ExpressionAttributeValues={
            ":g": {"S": world.log_group},
            ":s": {"S": bob_job},
            ":u": {"S": "https://phishing.example/login"},
        },
    )
    logs = world.alice.logs(alice_job).body["logs"]
    assert logs == ["alice's own line"]
    shown = world.alice.get(alice_job).body
    assert "phishing" not in str(shown)
    assert shown["log_url"].endswith(alice_job) and "console.aws.amazon.com" in shown["log_url"]
    assert "bob's private line" not in str(shown)
