"""A burst: 30 jobs, 3 slots, launches interleaved with completions."""

from __future__ import annotations

import random
from typing import Any

from jobs import instances
from jobs.states import JobStatus
from local_cloud.event_filter import matches
from tests.support.launcher import invoke
from tests.support.world import World, batch, inserted, modified


def test_thirty_jobs_through_three_slots(world: World) -> None:
    limit = world.settings.max_concurrent_jobs
    assert limit == 3
    rng = random.Random(30)
    jobs = [world.put_job() for _ in range(30)]
    stream: list[dict[str, Any]] = [inserted(job) for job in jobs]
    most_at_once = 0
    launched_instances: set[str] = set()

    def worker_finishes(job_id: str) -> None:
        """What a worker does: start, finish, terminate its own instance; its writes feed the stream."""
        provisioning = world.job(job_id)
        running = world.store.transition(
            job_id,
            [JobStatus.PROVISIONING],
            JobStatus.RUNNING,
            only_if={"instance_id": provisioning.instance_id},
        ).job
        assert running is not None
        completed = world.store.transition(job_id, [JobStatus.RUNNING], JobStatus.COMPLETED).job
        assert completed is not None
        instances.terminate([str(provisioning.instance_id)])
        stream.extend([modified(provisioning, running), modified(running, completed)])

    for _ in range(200):
        if not stream and all(world.job(j.job_id).status is JobStatus.COMPLETED for j in jobs):
            break
        # The mapping delivers what its filter lets through, in batches of up to 4.
        delivered, stream[:] = stream[:4], stream[4:]
        deliverable = [record for record in delivered if matches(record)]
        if deliverable:
            assert invoke(batch(*deliverable)) == []
        live = world.live_instances()
        launched_instances.update(i.instance_id for i in live)
        most_at_once = max(most_at_once, len(live))
        assert len(live) <= limit
        assert len(world.slots.holders()) <= limit
        provisioning = [j.job_id for j in jobs if world.job(j.job_id).status is JobStatus.PROVISIONING]
        for job_id in rng.sample(provisioning, k=rng.randint(0, len(provisioning))):
            worker_finishes(job_id)

    assert all(world.job(job.job_id).status is JobStatus.COMPLETED for job in jobs)
    assert all(world.job(job.job_id).attempt == 1 for job in jobs)
    assert len(launched_instances) == 30
    assert most_at_once == limit
    assert world.slots.holders() == set()
