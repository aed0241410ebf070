from jobs.worker_identity import instance_of, worker_user_id

ROLE = "AROAEXAMPLEWORKER0001"


def test_a_workers_caller_id_names_its_instance() -> None:
    user_id = worker_user_id(ROLE, "i-0123456789abcdef0")
    assert user_id == "AROAEXAMPLEWORKER0001:i-0123456789abcdef0"
    assert instance_of(user_id, ROLE) == "i-0123456789abcdef0"


def test_a_caller_id_of_another_role_or_shape_names_no_instance() -> None:
    assert instance_of("AROAOTHERROLE00000001:i-0123456789abcdef0", ROLE) is None
    assert instance_of("AKIAIOSFODNN7EXAMPLE", ROLE) is None
    assert instance_of(f"{ROLE}:i-0123456789abcdef0:extra", ROLE) is None
    assert instance_of(f"{ROLE}:job-id", ROLE) is None
