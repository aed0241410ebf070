"""Passwords written into libpq conninfo strings are masked whole, in every escaped form."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from jobs.redact import redact

passwords = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40
)


@given(passwords)
@example("a'b")
@example("a\\b")
@example("a\\'b c")
@example("tail\\")
@example("x' host=evil")
@example('"')
def test_a_conninfo_password_is_masked_whole_whatever_it_holds(password: str) -> None:
    conninfo = make_conninfo(host="db.example.com", port=5432, user="u", password=password, dbname="d")
    assert redact(conninfo) == "host=db.example.com port=5432 user=u password=*** dbname=d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password='a\\'bc' dbname=x", "password=*** dbname=x"),
        ("password='a\\\\' dbname=x", "password=*** dbname=x"),
        ("password=a\\ b\\ c dbname=x", "password=*** dbname=x"),
        ('PGPASSWORD="q\\"uoted" next', "PGPASSWORD=*** next"),
        ("cut short: password='abc\\'def", "cut short: password=***"),
    ],
)
def test_escaped_password_forms_leave_no_fragment(text: str, expected: str) -> None:
    assert redact(text) == expected
