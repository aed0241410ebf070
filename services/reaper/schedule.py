"""The reaper's schedule, defined once: Terraform's EventBridge rule and the local cloud's
scheduler both follow it, and tests/infra checks Terraform against it.

The local cloud keeps the rule and the event but runs it every few seconds, not minutes:
a laptop session lasts minutes.
"""

from __future__ import annotations

# The rule is named "<project or stack prefix>-reaper".
RULE_NAME_SUFFIX = "-reaper"
DEFAULT_INTERVAL_MINUTES = 5


def rule_name(prefix: str) -> str:
    return f"{prefix}{RULE_NAME_SUFFIX}"


def rate_expression(minutes: int) -> str:
    """EventBridge's rate syntax: singular for one."""
    return "rate(1 minute)" if minutes == 1 else f"rate({minutes} minutes)"
