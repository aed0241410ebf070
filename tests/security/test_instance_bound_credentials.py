"""A launch re-encrypts the job's credentials for the instance it started, and they decrypt
under that instance's context only (moto checks the encryption context; the key policy's
comparison with the caller's instance is proven in test_worker_reach.py)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from control_plane.admission import admit
from control_plane.context import ControlPlane
from jobs.crypto import CredentialCipher, Credentials
from jobs.record import INSTANCE_CREDENTIALS_ATTRIBUTE
from jobs.states import JobStatus
from tests.support.world import World, cloud, world

__all__ = ["cloud", "world"]

SECRET = Credentials(
    "postgresql://u:s3cret-test-pw@db.example.com/a", "postgresql://u:pw2-test@db.example.net/b"
)


def test_a_launch_binds_the_credentials_to_its_instance_alone(world: World) -> None:
    key_arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    cipher = CredentialCipher(key_arn)
    job = world.put_job()
    world.table.update_item(
        Key={"job_id": job.job_id},
        UpdateExpression="SET credentials = :c",
        ExpressionAttributeValues={":c": cipher.encrypt(job.job_id, SECRET)},
    )
    settings = world.settings.model_copy(update={"kms_key_id": key_arn})
    cp = ControlPlane(
        settings, world.store, world.slots, world.claims, world.fleet, world.owners, keys=cipher
    )

    admit(cp, job)

    launched = world.job(job.job_id)
    assert launched.status is JobStatus.PROVISIONING and launched.instance_id
    bound = world.store.get_credentials(job.job_id, attribute=INSTANCE_CREDENTIALS_ATTRIBUTE)
    assert bound is not None
    mine = settings.instance_arn(launched.instance_id)
    assert cipher.decrypt(job.job_id, bound, instance=mine) == SECRET
    for other in (settings.instance_arn("i-0ffffffffffffffff"), None):
        with pytest.raises(ClientError):
            cipher.decrypt(job.job_id, bound, instance=other)
    # Ending the job removes both ciphertexts.
    world.store.transition(job.job_id, [JobStatus.PROVISIONING], JobStatus.CANCELLED)
    item = world.table.get_item(Key={"job_id": job.job_id})["Item"]
    assert "credentials" not in item and INSTANCE_CREDENTIALS_ATTRIBUTE not in item
