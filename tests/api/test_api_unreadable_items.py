"""One forged item of an owner's (a worker may write job items) does not turn the owner's
`GET /jobs` or `GET /jobs/{id}` into a 500: it is skipped and logged."""

from __future__ import annotations

from tests.support.api import JOBS_TABLE, V1_BODY, ApiWorld


def test_an_unreadable_item_is_left_out_of_the_answers(world: ApiWorld) -> None:
    good = world.alice.submit(V1_BODY).body["job_id"]
    forged = "forged-0000-4000-8000-000000000000"
    world.dynamodb.put_item(
        TableName=JOBS_TABLE,
        Item={
            "job_id": {"S": forged},
            "owner": {"S": "alice"},
            "created_at": {"S": "9999-01-01T00:00:00Z"},
            "status": {"S": "running"},
            "progress": {"S": "not an object"},
        },
    )
    listing = world.alice.list()
    assert listing.status == 200
    assert [job["job_id"] for job in listing.body["jobs"]] == [good]
    assert world.alice.get(forged).status == 404
