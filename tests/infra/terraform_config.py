"""The Terraform configuration as python-hcl2 reads it, with accessors for tests.

python-hcl2 wraps every attribute value in a one-element list and every block in a list
of dicts; `attr` and `blocks` say which one a test expects. Expressions stay strings
("${var.x}"), so tests compare literals and references, never evaluated values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
_MISSING = object()
_DOCUMENT_REFERENCE = re.compile(r"\$\{data\.aws_iam_policy_document\.(\w+)(?:\[\"\w+\"\])?\.json\}")


@dataclass
class TerraformConfig:
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    settings: list[dict[str, Any]] = field(default_factory=list)  # terraform {} blocks
    moved: list[dict[str, str]] = field(default_factory=list)  # {"from": ..., "to": ...}

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        return self.resources[kind][name]

    def local(self, reference: str) -> Any:
        """The value of "${local.name}"."""
        match = re.fullmatch(r"\$\{local\.(\w+)\}", reference)
        assert match, f"not a local reference: {reference}"
        return self.locals[match.group(1)]


def load(directory: Path = TERRAFORM_DIR) -> TerraformConfig:
    config = TerraformConfig()
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for entry in parsed.get("resource", []):
            for kind, named in entry.items():
                config.resources.setdefault(kind, {}).update(named)
        for entry in parsed.get("data", []):
            for kind, named in entry.items():
                config.data.setdefault(kind, {}).update(named)
        for entry in parsed.get("variable", []):
            config.variables.update(entry)
        for entry in parsed.get("output", []):
            config.outputs.update(entry)
        for entry in parsed.get("locals", []):
            config.locals.update(
                {name: value[0] for name, value in entry.items() if not name.startswith("__")}
            )
        config.settings.extend(parsed.get("terraform", []))
        config.moved.extend(
            {key: attr(block, key) for key in ("from", "to")} for block in parsed.get("moved", [])
        )
    return config


def attr(body: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    if key not in body:
        if default is _MISSING:
            raise KeyError(key)
        return default
    value = body[key]
    assert isinstance(value, list) and len(value) == 1, f"{key} is not a single attribute: {value!r}"
    return value[0]


def blocks(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list(body.get(key, []))


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    principals: tuple[str, ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]

    @property
    def is_platform(self) -> bool:
        return self.sid.startswith("Platform")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resolve(config: TerraformConfig, value: Any) -> list[Any]:
    """A "${local.name}" reference replaced by the local's value (lists flattened)."""
    if isinstance(value, str) and re.fullmatch(r"\$\{local\.\w+\}", value):
        return [r for item in _as_list(config.local(value)) for r in _resolve(config, item)]
    return [value]


def policy_statements(config: TerraformConfig, document: str) -> list[Statement]:
    """Statements of data.aws_iam_policy_document.<document>, its source documents included."""
    body = config.data["aws_iam_policy_document"][document]
    statements: list[Statement] = []
    for source in _as_list(attr(body, "source_policy_documents", [])):
        match = _DOCUMENT_REFERENCE.fullmatch(source)
        assert match, f"unexpected source document {source}"
        statements.extend(policy_statements(config, match.group(1)))
    for block in blocks(body, "statement"):
        principals = tuple(
            str(identifier)
            for principal in blocks(block, "principals")
            for identifier in _as_list(attr(principal, "identifiers"))
        )
        conditions = tuple(
            (attr(c, "test"), attr(c, "variable"), tuple(str(v) for v in _as_list(attr(c, "values"))))
            for c in blocks(block, "condition")
        )
        statements.append(
            Statement(
                sid=attr(block, "sid", ""),
                effect=attr(block, "effect", "Allow"),
                actions=frozenset(_as_list(attr(block, "actions"))),
                resources=tuple(
                    str(r) for item in _as_list(attr(block, "resources", [])) for r in _resolve(config, item)
                ),
                principals=principals,
                conditions=conditions,
            )
        )
    return statements
