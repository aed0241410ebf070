"""PostgreSQL connection URLs: strict parsing, validation and a redacted form.

A URL is accepted only if nothing in it could be read as shell or SQL: credentials may
hold any character, but only percent-encoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

MAX_URL_LENGTH = 2048
SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432

# Characters that mean something to a shell or to SQL. '&' and '=' are allowed only as
# query-string separators, which are checked separately. '~' is not here: percent-encoders
# leave it as is (RFC 3986 unreserved), so it may appear in credentials, and only there.
_FORBIDDEN = set(";'\"`$\\|<>(){}*!#^\n\r\t ,")
_USERINFO_CHARS = re.compile(r"^[A-Za-z0-9._~%+\-]*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")
DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")
# libpq parameters a URL may carry that change nothing outside the connection itself
# (managed-PostgreSQL strings carry channel_binding, client_encoding, options, ...).
ALLOWED_PARAMETERS = frozenset(
    {
        "application_name",
        "channel_binding",
        "client_encoding",
        "connect_timeout",
        "fallback_application_name",
        "gssencmode",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "load_balance_hosts",
        "require_auth",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcompression",
        "sslmode",
        "sslnegotiation",
        "sslrootcert",
        "sslsni",
        "target_session_attrs",
        "tcp_user_timeout",
    }
)
# libpq parameters a job may not set, and why (the error names both).
REFUSED_PARAMETERS = {
    **dict.fromkeys(
        ("sslcert", "sslkey", "sslcrl", "sslcrldir", "sslpassword", "passfile", "service", "krbsrvname"),
        "it makes libpq read files or settings on the worker",
    ),
    **dict.fromkeys(
        ("host", "hostaddr", "port", "dbname", "user", "password"),
        "it would override the URL's own part; write it in the URL itself",
    ),
    "replication": "replication connections are not supported",
    "options": "the engine sets the session's server options itself",
    "gsslib": "it selects a library on the worker",
    "requirepeer": "it applies to Unix sockets on the worker only",
}
# sslrootcert names a file on the worker; only "system" (the worker's CA store) is a value.
SSLROOTCERT_VALUES = frozenset({"system"})
MAX_PARAMETER_VALUE_LENGTH = 128
_PARAMETER_VALUE = re.compile(rf"^[A-Za-z0-9_.\-]{{1,{MAX_PARAMETER_VALUE_LENGTH}}}$")


class InvalidUrl(ValueError):
    """The URL is not acceptable; the message says why and never repeats the URL."""


@dataclass(frozen=True)
class ConnectionUrl:
    scheme: str
    user: str | None = field(repr=False)
    password: str | None = field(repr=False)
    host: str
    port: int
    database: str
    parameters: tuple[tuple[str, str], ...] = ()
    # The checked address to connect to (libpq `hostaddr`); `host` stays for TLS name checks.
    hostaddr: str | None = None

    def at_address(self, address: str) -> ConnectionUrl:
        return replace(self, hostaddr=address)

    @property
    def redacted(self) -> str:
        """host, port and database; never user or password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{host}:{self.port}/{self.database}"


def parse_url(raw: str, *, field: str = "url") -> ConnectionUrl:
    if not isinstance(raw, str) or not raw:
        raise InvalidUrl(f"{field} is required")
    if len(raw) > MAX_URL_LENGTH:
        raise InvalidUrl(f"{field} is longer than {MAX_URL_LENGTH} characters")
    if any(ch in _FORBIDDEN or ord(ch) < 0x20 or ord(ch) > 0x7E for ch in raw):
        raise InvalidUrl(
            f"{field} contains a character that is not allowed; percent-encode special characters"
        )
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise InvalidUrl(f"{field} must start with postgresql:// or postgres://")
    rest, _, query = rest.partition("?")
    if rest.count("@") > 1:
        raise InvalidUrl(f"{field} has more than one '@'; percent-encode '@' in credentials as %40")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    authority, slash, database = hostpart.partition("/")
    if not slash or not database:
        raise InvalidUrl(f"{field} must name a database (postgresql://host:port/database)")
    user, password = _parse_userinfo(userinfo, field) if at else (None, None)
    host, port = _parse_authority(authority, field)
    database = unquote(database)
    if not DATABASE_NAME.match(database):
        raise InvalidUrl(
            f"{field} database name must start with a letter or '_' and hold only letters, digits, '_' or '-'"
        )
    return ConnectionUrl(
        scheme=scheme.lower(),
        user=user,
        password=password,
        host=host,
        port=port,
        database=database,
        parameters=_parse_query(query, field),
    )


def _parse_userinfo(userinfo: str, field: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not _USERINFO_CHARS.match(user) or not _USERINFO_CHARS.match(password):
        raise InvalidUrl(f"{field} credentials must be percent-encoded")
    try:
        user_text = unquote(user, errors="strict")
        password_text = unquote(password, errors="strict") if colon else None
    except UnicodeDecodeError as exc:
        raise InvalidUrl(f"{field} credentials are not valid percent-encoded UTF-8") from exc
    if not user_text:
        raise InvalidUrl(f"{field} has an empty user name")
    return user_text, password_text


def _parse_authority(authority: str, field: str) -> tuple[str, int]:
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or not _IPV6.match(host):
            raise InvalidUrl(f"{field} has an invalid IPv6 host")
        port_text = after[1:] if after.startswith(":") else ""
        if after and not after.startswith(":"):
            raise InvalidUrl(f"{field} has an invalid host")
    else:
        host, _, port_text = authority.partition(":")
        if not host:
            raise InvalidUrl(f"{field} must name a host")
        if not _HOST_NAME.match(host):
            raise InvalidUrl(f"{field} has an invalid host name")
    if not port_text:
        return host.lower(), DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidUrl(f"{field} port must be a number from 1 to 65535")
    return host.lower(), int(port_text)


def _parse_query(query: str, field: str) -> tuple[tuple[str, str], ...]:
    if not query:
        return ()
    pairs = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if key in REFUSED_PARAMETERS:
            raise InvalidUrl(f"{field} query parameter {key} is not allowed: {REFUSED_PARAMETERS[key]}")
        if key not in ALLOWED_PARAMETERS:
            raise InvalidUrl(
                f"{field} has a query parameter that is not a libpq connection parameter "
                f"or is not supported; allowed: {', '.join(sorted(ALLOWED_PARAMETERS))}"
            )
        if key == "sslrootcert" and value not in SSLROOTCERT_VALUES:
            raise InvalidUrl(
                f"{field} query parameter sslrootcert may only be 'system': "
                "any other value makes libpq read a file on the worker"
            )
        if not eq or not _PARAMETER_VALUE.match(value):
            raise InvalidUrl(
                f"{field} query parameter {key} needs a value of 1 to {MAX_PARAMETER_VALUE_LENGTH} "
                "letters, digits, '_', '.' or '-'"
            )
        pairs.append((key, value))
    return tuple(pairs)
