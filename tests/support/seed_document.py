"""The seed's deployment document (`shared/seed/terraform-README.md`, beside the repository),
read as its readers type it: its fenced blocks, its commands, its tfvars, its outputs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = Path("shared") / "seed" / "terraform-README.md"
_FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_OUTPUT = re.compile(r"^- `(\w+)`:", re.MULTILINE)


def find_seed_document() -> Path | None:
    """The document in the nearest folder above the checkout that has it (a worktree sits
    one level deeper than the main checkout)."""
    for folder in ROOT.parents:
        if (folder / DOCUMENT).is_file():
            return folder / DOCUMENT
    return None


def blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(text) if lang == language]


def commands(text: str) -> list[str]:
    """Every command of the bash blocks as a shell reads it: comments dropped, a line ended
    by a backslash or inside an open quote joined to the next."""
    found = []
    for body in blocks(text, "bash"):
        pending, separator = "", ""
        for line in body.splitlines():
            if not pending and (not line.strip() or line.strip().startswith("#")):
                continue
            pending = (
                f"{pending}{separator}{line.strip() if separator == ' ' else line}"
                if pending
                else line.strip()
            )
            separator = "\n"
            if pending.endswith("\\"):
                pending, separator = pending[:-1].rstrip(), " "
                continue
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # an open quote: the command goes on
                continue
            found.append(pending)
            pending, separator = "", ""
    return found


# How each command of the seed is held to its word. Run as written: by
# tests/e2e/test_e2e_seed_commands.py against the local cloud, in a copy of the module laid
# out as the seed has it. Replaced: the seed's command cannot work here as written, and
# terraform/README.md says what to type instead (the text given). Setup: the machine's, not
# the module's (tests/infra checks what of it the module relies on).
RUN_AS_WRITTEN = (
    "terraform init",
    "terraform plan",
    "terraform apply",
    "terraform output",
    "API_ENDPOINT=$(terraform output -raw api_endpoint)",
    "terraform apply -target=aws_lambda_function.coordinator",
)
_PACKAGE = "make package"  # the repository's packages, from its root (there is no ../lambda)
REPLACED = {
    "cd ../lambda": _PACKAGE,
    "zip -r lambda.zip handler.py": _PACKAGE,
    "cd ../terraform": _PACKAGE,
    "cd ../lambda && zip -r lambda.zip handler.py && cd ../terraform": (
        "cd .. && make package && cd terraform"
    ),
    # Every request needs an API key.
    "curl -X POST": '-H "x-api-key: ${SEREN_API_KEY}"',
    'curl "${API_ENDPOINT}/jobs/JOB_ID"': (
        'curl -H "x-api-key: ${SEREN_API_KEY}" "${API_ENDPOINT}/jobs/JOB_ID"'
    ),
    # The tables' deletion protection refuses a plain destroy.
    "terraform destroy": "terraform destroy -var table_deletion_protection=false",
}
SETUP = (
    "brew install terraform",
    "wget https://releases.hashicorp.com/terraform/1.6.0/terraform_1.6.0_linux_amd64.zip",
    "unzip terraform_1.6.0_linux_amd64.zip",
    "sudo mv terraform /usr/local/bin/",
    "aws configure",
    'export AWS_ACCESS_KEY_ID="..."',
    'export AWS_SECRET_ACCESS_KEY="..."',
    'export AWS_REGION="us-east-1"',
)


def replacement(command: str) -> str | None:
    """What terraform/README.md says to type instead of `command`, if it is replaced."""
    for start, instead in REPLACED.items():
        if command == start or (start.endswith("-X POST") and command.startswith(start)):
            return instead
    return None


def section(text: str, heading: str) -> str:
    """The text under a `##`/`###` heading, up to the next one (a `#` line in a code block is
    a comment)."""
    found = re.search(rf"^##+ {re.escape(heading)}\n(.*?)(?=^##+ |\Z)", text, re.MULTILINE | re.DOTALL)
    assert found, f"the seed has no section {heading!r}"
    return found.group(1)


def tfvars(text: str) -> tuple[str, dict[str, object]]:
    """The seed's terraform.tfvars: its text and its values."""
    (body,) = blocks(section(text, "Create terraform.tfvars"), "hcl")
    parsed = hcl2.loads(body)
    # python-hcl2 wraps each attribute's value in a one-element list.
    return body, {name: value[0] for name, value in parsed.items() if not name.startswith("__")}


def outputs(text: str) -> list[str]:
    return _OUTPUT.findall(section(text, "Get Outputs"))
