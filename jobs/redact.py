"""Remove credentials from text before it is logged, stored or shown."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"
# user:password@ inside any URL-like text (postgres://, postgresql://, or bare user:pw@host).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^@/\s'\"]*)@")
# password=... in libpq key/value strings and environment dumps. libpq escapes ' and \ with a
# backslash inside quotes and outside them (password='a\'b', password=a\ b), so a value runs
# to the first unescaped closing quote or blank; an unclosed ' runs to the end. libpq does not
# quote with ", so only a closed "..." (a shell's form) is one value; a lone " is a character.
_KEY_VALUE_PASSWORD = re.compile(
    r"""(?i)\b(password|passwd|pgpassword)\s*[=:]\s*"""
    r"""('(?:[^'\\]|\\.)*(?:'|\\?$)|"(?:[^"\\]|\\.)*"|(?:[^\s\\]|\\.)+\\?)""",
    re.DOTALL,
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL credentials, password assignments, or any of `secrets` verbatim.

    Pass the decrypted URLs and passwords as `secrets`: a password echoed in an unusual
    form (an error message quoting it) is caught too.
    """
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _KEY_VALUE_PASSWORD.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
