"""Which AWS API actions a principal's code can call, read from the source (not executed).

Reachability is per function: starting from every function of the principal's own
package, calls are followed into project functions and methods (by module attribute,
imported name, `self.` method, or, for other receivers, by method name among the classes
of the modules the principal imports). In every reached function, a method call whose
name is an operation of a boto3 service that its module creates a client of (or a
DynamoDB table resource) counts as a call of that operation. The result over-approximates
a little (same-named methods), never under-approximates for code written the way the
data-access modules are written (clients from `jobs.aws`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

from build_tools.modules import reachable_modules

# boto3 resource methods of a DynamoDB Table, as the operations they call.
TABLE_METHODS = {
    "get_item": "GetItem",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "query": "Query",
    "scan": "Scan",
    "batch_writer": "BatchWriteItem",
}
# IAM authorises each step of a transaction as its own action. The code's one transaction
# (through a table's client: `table.meta.client.transact_write_items`) puts a job and
# updates its owner's ledger item (jobs/store.py, jobs/owners.py).
TABLE_TRANSACTIONS = {"transact_write_items": ("PutItem", "UpdateItem")}
# Actions AWS authorizes as part of another call: RunInstances with TagSpecifications is
# also authorized as CreateTags, and with an instance profile (the launch template's) as
# iam:PassRole of its role.
IMPLIED_ACTIONS = {"ec2:RunInstances": ("ec2:CreateTags", "iam:PassRole")}
# Operations IAM authorises as more than one action.
IAM_ACTIONS_OF_OPERATION = {"kms:ReEncrypt": {"kms:ReEncryptFrom", "kms:ReEncryptTo"}}
IAM_PREFIX = {"dynamodb": "dynamodb", "kms": "kms", "ec2": "ec2", "logs": "logs", "cloudwatch": "cloudwatch"}


@cache
def operations(service: str) -> dict[str, str]:
    """snake_case method name -> API operation name."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


@dataclass
class _Function:
    module: str
    qualname: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: str | None


@dataclass
class _Module:
    name: str
    tree: ast.Module
    services: set[str] = field(default_factory=set)
    imports: dict[str, str] = field(default_factory=dict)  # local name -> module or module.attr
    functions: dict[str, _Function] = field(default_factory=dict)  # qualname -> function
    # variable/attribute/parameter name -> names in its annotation or constructor call
    typed_names: dict[str, set[str]] = field(default_factory=dict)
    # classes that only describe an interface (typing.Protocol): a receiver annotated with
    # one may be any class that has the method
    protocols: set[str] = field(default_factory=set)


def _type_names(expression: ast.AST | None) -> set[str]:
    if expression is None:
        return set()
    names = set()
    for node in ast.walk(expression):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def _target_name(target: ast.AST) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _parse(name: str, path: Path) -> _Module:
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _Module(name, tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module.imports[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                module.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.AnnAssign) and (typed := _target_name(node.target)):
            module.typed_names.setdefault(typed, set()).update(_type_names(node.annotation))
        elif isinstance(node, ast.arg) and node.annotation is not None:
            module.typed_names.setdefault(node.arg, set()).update(_type_names(node.annotation))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            for target in node.targets:
                if typed := _target_name(target):
                    module.typed_names.setdefault(typed, set()).update(_type_names(node.value.func))
        elif isinstance(node, ast.keyword) and node.arg and isinstance(node.value, ast.Call):
            module.typed_names.setdefault(node.arg, set()).update(_type_names(node.value.func))
        if isinstance(node, ast.Call):
            callee = node.func
            method = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            first = node.args[0] if node.args else None
            if method == "client" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                module.services.add(first.value)
            elif method in {"table", "Table"} or (
                method == "resource" and isinstance(first, ast.Constant) and first.value == "dynamodb"
            ):
                module.services.add("dynamodb-table")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            module.functions[node.name] = _Function(name, node.name, node, None)
        elif isinstance(node, ast.ClassDef):
            if "Protocol" in set().union(*(_type_names(base) for base in node.bases)):
                module.protocols.add(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    qualname = f"{node.name}.{item.name}"
                    module.functions[qualname] = _Function(name, qualname, item, node.name)
    return module


def aws_actions(own_modules: Iterable[str]) -> dict[str, set[str]]:
    """IAM action ("dynamodb:GetItem", ...) -> the modules that call it, for every call
    reachable from the functions of `own_modules`."""
    own = list(own_modules)
    modules = {name: _parse(name, path) for name, path in reachable_modules(own).items()}
    methods_by_name: dict[str, list[_Function]] = {}
    protocols = set().union(*(m.protocols for m in modules.values()))
    class_names = {f.cls for m in modules.values() for f in m.functions.values() if f.cls} - protocols
    receiver_classes: dict[str, set[str]] = {}
    for module in modules.values():
        for name, types in module.typed_names.items():
            receiver_classes.setdefault(name, set()).update(types & class_names)
    for module in modules.values():
        for function in module.functions.values():
            if function.cls is not None and function.cls not in protocols:
                methods_by_name.setdefault(function.node.name, []).append(function)

    pending = [f for name in own if name in modules for f in modules[name].functions.values()]
    module_level = [modules[name].tree for name in own if name in modules]
    seen: set[tuple[str, str]] = set()
    actions: dict[str, set[str]] = {}

    def visit(body: ast.AST, module: _Module, cls: str | None) -> None:
        for node in ast.walk(body):
            if not isinstance(node, ast.Call):
                continue
            for action in _aws_call(node, module):
                actions.setdefault(action, set()).add(module.name)
            pending.extend(_callees(node, module, cls, modules, methods_by_name, receiver_classes))

    for tree, name in zip(module_level, [n for n in own if n in modules], strict=True):
        for statement in tree.body:
            if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(statement, modules[name], None)
    while pending:
        function = pending.pop()
        key = (function.module, function.qualname)
        if key in seen:
            continue
        seen.add(key)
        visit(function.node, modules[function.module], function.cls)
    for action, callers in list(actions.items()):
        for implied in IMPLIED_ACTIONS.get(action, ()):
            actions.setdefault(implied, set()).update(callers)
    return actions


def _aws_call(node: ast.Call, module: _Module) -> set[str]:
    if not isinstance(node.func, ast.Attribute):
        return set()
    method = node.func.attr
    found = set()
    if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
        method = str(node.args[0].value)
    for service in module.services:
        if service == "dynamodb-table":
            if method in TABLE_METHODS:
                found.add(f"dynamodb:{TABLE_METHODS[method]}")
            found.update(f"dynamodb:{step}" for step in TABLE_TRANSACTIONS.get(method, ()))
        elif method in operations(service):
            action = f"{IAM_PREFIX.get(service, service)}:{operations(service)[method]}"
            found |= IAM_ACTIONS_OF_OPERATION.get(action, {action})
    return found


def _callees(
    node: ast.Call,
    module: _Module,
    cls: str | None,
    modules: dict[str, _Module],
    methods_by_name: dict[str, list[_Function]],
    receiver_classes: dict[str, set[str]],
) -> list[_Function]:
    callee = node.func
    if isinstance(callee, ast.Name):
        if callee.id in module.functions:
            return [module.functions[callee.id]]
        target = module.imports.get(callee.id)
        if target:
            owner, _, attr = target.rpartition(".")
            if owner in modules:
                found = modules[owner].functions.get(attr)
                if found:
                    return [found]
                init = modules[owner].functions.get(f"{attr}.__init__")
                return [init] if init else []
        return []
    if not isinstance(callee, ast.Attribute):
        return []
    receiver = callee.value
    if isinstance(receiver, ast.Name):
        if receiver.id in {"self", "cls"} and cls is not None:
            found = module.functions.get(f"{cls}.{callee.attr}")
            if found:
                return [found]
        target = module.imports.get(receiver.id)
        if target in modules:
            found = modules[target].functions.get(callee.attr)
            return [found] if found else []
    candidates = methods_by_name.get(callee.attr, [])
    # A receiver whose name is annotated (or assigned from a constructor) somewhere in the
    # code narrows the candidates to those classes.
    known = receiver_classes.get(_target_name(receiver) or "", set())
    narrowed = [f for f in candidates if f.cls in known]
    return narrowed or candidates
