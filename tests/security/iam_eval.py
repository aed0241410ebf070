"""A small IAM policy evaluator over the Terraform-declared statements (moto enforces no IAM).

It renders each `aws_iam_policy_document` with concrete ARNs for one deployment, then answers
"is this request allowed?" as AWS documents it for one account: an explicit Deny wins, else
any Allow whose action, resource, principal and every condition match, else denied. A KMS
request must be allowed by the key policy (this module's key policies name their principals,
and grant the account root no cryptographic action). Supported: the condition operators the
module uses (String*, Arn*, Null, Bool, with ForAllValues:/ForAnyValue: and IfExists) and
policy variables such as `${ec2:SourceInstanceARN}`, and the keys AWS derives from the
resource itself (`resource_context`); anything else raises, so a statement this
evaluator cannot judge fails the test instead of passing it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from terraform_config import Statement, TerraformConfig, policy_statements

ACCOUNT = "111122223333"
REGION = "us-east-1"
PROJECT = "seren-remote"
TABLE = "replication-jobs"
ROLE_ARNS = {name: f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}-{name}" for name in ("api", "launcher", "reaper")}
ROLE_ARNS["worker"] = f"arn:aws:iam::{ACCOUNT}:role/replication-worker"
KEY_ARNS = {
    name: f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{index:08d}-0000-0000-0000-000000000000"
    for index, name in enumerate(("credentials", "request_mac", "data"))
}
WORKER_LOG_GROUP = f"/{PROJECT}/workers"

REFERENCES = {
    "aws_dynamodb_table.jobs.arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}",
    "aws_dynamodb_table.api_keys.arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{PROJECT}-api-keys",
    "aws_dynamodb_table.jobs.stream_arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}/stream/1",
    "aws_cloudwatch_log_group.workers.arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{WORKER_LOG_GROUP}",
    "aws_sqs_queue.launcher_dlq.arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{PROJECT}-launcher-dlq",
    "aws_security_group.worker.arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/sg-0123",
    "aws_launch_template.worker.arn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/lt-0123",
    **{f"aws_iam_role.{name}.arn": arn for name, arn in ROLE_ARNS.items()},
    **{f"aws_kms_key.{name}.arn": arn for name, arn in KEY_ARNS.items()},
    "local.partition": "aws",
    "local.account_id": ACCOUNT,
    "var.aws_region": REGION,
    "var.project_name": PROJECT,
    "var.dynamodb_table_name": TABLE,
    "var.metrics_namespace": "RemoteReplication",
    "var.worker_ami_id": "ami-0123",
}
_EXPRESSION = re.compile(r"(?<!\$)\$\{([^}]+)\}")
_VARIABLE = re.compile(r"\$\$?\{([a-zA-Z0-9]+:[A-Za-z0-9/_:-]+)\}")


def render(config: TerraformConfig, text: str, each_key: str = "") -> str:
    """Terraform interpolations replaced by this deployment's values (`each_key`: the function
    a per-function document is for); `$${x}` (an IAM policy variable escaped for Terraform)
    left as `${x}`."""
    for _ in range(10):

        def value(match: re.Match[str]) -> str:
            reference = match.group(1)
            if reference == "aws_cloudwatch_log_group.functions[each.key].arn":
                return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{PROJECT}-{each_key}"
            if reference in REFERENCES:
                return REFERENCES[reference]
            if reference.startswith("local.") and isinstance(config.locals.get(reference[6:]), str):
                return str(config.locals[reference[6:]])
            raise KeyError(f"no value for ${{{reference}}}: add it to REFERENCES")

        rendered = _EXPRESSION.sub(value, text)
        if rendered == text:
            break
        text = rendered
    return text.replace("$${", "${")


@dataclass(frozen=True)
class Rule:
    sid: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    principals: tuple[str, ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]


def rules(config: TerraformConfig, document: str) -> list[Rule]:
    return [_rule(config, statement, document) for statement in policy_statements(config, document)]


def _rule(config: TerraformConfig, statement: Statement, document: str) -> Rule:
    def text(value: str) -> str:
        return render(config, value, each_key=document)

    return Rule(
        sid=statement.sid,
        effect=statement.effect,
        actions=tuple(sorted(statement.actions)),
        resources=tuple(r for raw in statement.resources for r in _resources(raw, text)),
        principals=tuple(text(p) for p in statement.principals),
        conditions=tuple(
            (test, text(variable), tuple(text(v) for v in _expand(config, values)))
            for test, variable, values in statement.conditions
        ),
    )


# The one list expression among the resources: RunInstances' subnets, group, template, image.
_RUN_INSTANCES_RESOURCES = [
    f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/subnet-0123",
    REFERENCES["aws_security_group.worker.arn"],
    REFERENCES["aws_launch_template.worker.arn"],
    f"arn:aws:ec2:{REGION}::image/ami-0123",
]


def _resources(raw: str, text: Any) -> list[str]:
    if raw.startswith(("${concat([for s in var.subnet_ids", "${concat([for s in local.subnet_ids")):
        return _RUN_INSTANCES_RESOURCES
    return [text(raw)]


def _expand(config: TerraformConfig, values: tuple[str, ...]) -> list[str]:
    """A condition's values, a list local ("${local.x}") spelled out."""
    expanded: list[str] = []
    for value in values:
        local = re.fullmatch(r"\$\{local\.(\w+)\}", value)
        if local and isinstance(config.locals.get(local.group(1)), list):
            expanded += [str(v) for v in config.locals[local.group(1)]]
        else:
            expanded.append(value)
    return expanded


def as_policy_json(rules_: Iterable[Rule]) -> str:
    """The rendered statements as an IAM policy document (for the audit tools)."""
    statements = []
    for rule in rules_:
        statement: dict[str, Any] = {"Sid": rule.sid, "Effect": rule.effect, "Action": list(rule.actions)}
        statement["Resource"] = list(rule.resources) or ["*"]
        if rule.principals:
            statement["Principal"] = {"AWS": list(rule.principals)}
        conditions: dict[str, dict[str, str | list[str]]] = {}
        for test, variable, values in rule.conditions:
            conditions.setdefault(test, {})[variable] = values[0] if len(values) == 1 else list(values)
        if conditions:
            statement["Condition"] = conditions
        statements.append(statement)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@dataclass(frozen=True)
class Request:
    principal: str
    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


_INSTANCE_ARN = re.compile(r"arn:aws:ec2:[^:]*:\d*:instance/(i-[0-9a-f]+)")


def resource_context(resource: str) -> dict[str, str]:
    """The condition keys AWS derives from the resource a request names: for an EC2 instance,
    `ec2:InstanceID` (its id; a resource key of TerminateInstances in the Service
    Authorization Reference). The request cannot choose them."""
    instance = _INSTANCE_ARN.fullmatch(resource)
    return {"ec2:InstanceID": instance.group(1)} if instance else {}


def allowed(policy: Iterable[Rule], request: Request) -> bool:
    request = Request(
        request.principal, request.action, request.resource,
        {**request.context, **resource_context(request.resource)},
    )  # fmt: skip
    matching = [rule for rule in policy if _matches(rule, request)]
    if any(rule.effect == "Deny" for rule in matching):
        return False
    return any(rule.effect == "Allow" for rule in matching)


def _substitute(pattern: str, context: Mapping[str, Any]) -> str | None:
    """Policy variables replaced from the request context; None when one has no value
    (AWS then treats the statement as not matching)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found = context.get(match.group(1))
        if not isinstance(found, str):
            missing = True
            return ""
        return found

    result = _VARIABLE.sub(value, pattern)
    return None if missing else result


def _glob(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _matches(rule: Rule, request: Request) -> bool:
    if not any(_glob(action, request.action, case_sensitive=False) for action in rule.actions):
        return False
    if rule.principals and not any(_principal_matches(p, request.principal) for p in rule.principals):
        return False
    resources = [_substitute(r, request.context) for r in rule.resources] or ["*"]
    if not any(r is not None and _glob(r, request.resource) for r in resources):
        return False
    return all(_condition(test, key, values, request.context) for test, key, values in rule.conditions)


def _principal_matches(policy_principal: str, caller: str) -> bool:
    if policy_principal == "*":
        return True
    root = re.fullmatch(r"arn:aws:iam::(\d+):root", policy_principal)
    return caller == policy_principal if root is None else False


_STRING_OPERATORS = {
    "StringEquals": lambda a, b: a == b,
    "StringNotEquals": lambda a, b: a == b,
    "StringEqualsIgnoreCase": lambda a, b: a.lower() == b.lower(),
    "StringLike": lambda a, b: _glob(b, a),
    "StringNotLike": lambda a, b: _glob(b, a),
    "ArnEquals": lambda a, b: a == b,
    "ArnLike": lambda a, b: _glob(b, a),
    "ArnNotEquals": lambda a, b: a == b,
    "ArnNotLike": lambda a, b: _glob(b, a),
}
_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _condition(test: str, key: str, values: tuple[str, ...], context: Mapping[str, Any]) -> bool:
    qualifier, _, operator = test.rpartition(":")
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    present = key in context
    if operator == "Null":
        return (not present) == (values[0].lower() == "true")
    if operator == "Bool":
        return present and str(context[key]).lower() == values[0].lower()
    if operator not in _STRING_OPERATORS:
        raise NotImplementedError(f"condition operator {test} is not supported by this evaluator")
    if not present:
        if qualifier == "ForAllValues":
            return True
        return if_exists or operator in _NEGATED
    expected = [v for v in (_substitute(value, context) for value in values) if v is not None]
    compare = _STRING_OPERATORS[operator]
    actual = context[key]
    items = actual if isinstance(actual, list) else [actual]

    def one(item: str) -> bool:
        hit = any(compare(item, value) for value in expected)
        return not hit if operator in _NEGATED else hit

    if qualifier == "ForAllValues":
        return all(one(item) for item in items)
    if qualifier == "ForAnyValue":
        return any(one(item) for item in items)
    if isinstance(actual, list):
        raise ValueError(f"{key} is multivalued: the policy must say ForAllValues or ForAnyValue")
    return one(actual)
