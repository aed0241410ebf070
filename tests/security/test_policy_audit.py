"""The deployed policies audited by parliament and cloudsplaining: every finding is either
absent or listed below with the reason it stays. A new finding fails, and so does a listed
one that no longer occurs (the list stays true)."""

from __future__ import annotations

import json
import warnings

import pytest
from iam_eval import as_policy_json, rules
from terraform_config import TerraformConfig, load

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # parliament imports pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    from parliament import analyze_policy_string

from cloudsplaining.scan.policy_document import PolicyDocument

IDENTITY_POLICIES = ("api", "launcher", "reaper", "worker")
KEY_POLICIES = ("credentials_key", "request_mac_key", "data_key")

ADMINISTRATION = "the account's key administrators manage the key (no cryptography for them)"
RUN_INSTANCES_SPLIT = (
    "RunInstances is granted in three statements, one per resource kind and condition (template, "
    "tag, network); together they cover every resource it needs"
)
LAUNCHING = (
    "launching workers is the launcher's and reaper's job: PassRole names only the worker role, "
    "only to EC2, and RunInstances only from the workers' template, image, subnets and group"
)
KEY_RESOURCE_STAR = 'in a key policy Resource "*" is this key, the one form KMS accepts'
PARLIAMENT_ACCEPTED: dict[tuple[str, str], str] = {
    ("launcher", "PRIVILEGE_ESCALATION"): LAUNCHING,
    ("reaper", "PRIVILEGE_ESCALATION"): LAUNCHING,
    ("launcher", "PERMISSIONS_MANAGEMENT_ACTIONS"): LAUNCHING,
    ("reaper", "PERMISSIONS_MANAGEMENT_ACTIONS"): LAUNCHING,
    ("launcher", "RESOURCE_MISMATCH"): RUN_INSTANCES_SPLIT
    + "; ListStreams, which takes no resource, is inert on the stream ARN (the mapping names the stream)",
    ("reaper", "RESOURCE_MISMATCH"): RUN_INSTANCES_SPLIT,
    **{(key, "PERMISSIONS_MANAGEMENT_ACTIONS"): ADMINISTRATION for key in KEY_POLICIES},
    **{(key, "RESOURCE_STAR"): KEY_RESOURCE_STAR for key in KEY_POLICIES},
    ("data_key", "UNKNOWN_PRINCIPAL"): "CloudWatch Logs and CloudWatch alarms use the data key as services",
    ("data_key", "UNKNOWN_CONDITION_FOR_ACTION"): (
        "kms:EncryptionContext:aws:logs:arn is the context CloudWatch Logs sets (AWS's documented key policy)"
    ),
    ("worker", "UNKNOWN_CONDITION_FOR_ACTION"): (
        "ec2:SourceInstanceARN (a worker terminates only itself) is an AWS global condition key, usable "
        "with any action (EC2 User Guide, condition keys); parliament lists only aws: keys as global"
    ),
    ("data_key", "MISMATCHED_TYPE"): "the log-group ARN pattern is matched with ArnLike, as AWS documents",
}
# cloudsplaining's risk categories, for the key policies only (no identity policy has any).
CLOUDSPLAINING_ACCEPTED: dict[tuple[str, str], str] = {
    **{(key, "resource_exposure"): ADMINISTRATION + ": PutKeyPolicy" for key in KEY_POLICIES},
    **{(key, "infrastructure_modification"): ADMINISTRATION for key in KEY_POLICIES},
    ("data_key", "resource_exposure"): "the account root holds kms:* (AWS's default key policy, which "
    "delegates to IAM); services get grants only through DynamoDB in this account",
}


@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    tf: TerraformConfig = load()
    return {name: as_policy_json(rules(tf, name)) for name in (*IDENTITY_POLICIES, *KEY_POLICIES)}


def test_parliament_finds_nothing_unexplained(documents: dict[str, str]) -> None:
    found = set()
    for name, text in documents.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            policy = analyze_policy_string(text, include_community_auditors=True)
        found |= {(name, finding.issue) for finding in policy.findings}
    assert found - PARLIAMENT_ACCEPTED.keys() == set(), "new findings: fix them or give a reason"
    assert PARLIAMENT_ACCEPTED.keys() - found == set(), "no longer found: remove them from the list"


def _risks(text: str) -> set[str]:
    document = PolicyDocument(json.loads(text))
    categories = {
        "privilege_escalation": document.allows_privilege_escalation,
        "data_exfiltration": document.allows_data_exfiltration_actions,
        "resource_exposure": document.permissions_management_without_constraints,
        "infrastructure_modification": document.infrastructure_modification,
    }
    return {category for category, findings in categories.items() if findings}


def test_cloudsplaining_finds_no_unexplained_risk(documents: dict[str, str]) -> None:
    found = {(name, risk) for name, text in documents.items() for risk in _risks(text)}
    assert not {risk for name, risk in found if name in IDENTITY_POLICIES}, found
    assert found - CLOUDSPLAINING_ACCEPTED.keys() == set(), "new risks: fix them or give a reason"
    assert CLOUDSPLAINING_ACCEPTED.keys() - found == set(), "no longer found: remove them from the list"
