"""The API-keys table and the admin commands."""

from __future__ import annotations

import pytest

from cli.admin import main
from jobs.api_keys import ApiKeyStore, InvalidOwner, hash_key
from tests.support.api import API_KEYS_TABLE, ApiWorld


def test_create_list_revoke_through_the_admin_command(
    world: ApiWorld, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEYS_TABLE_NAME", API_KEYS_TABLE)
    assert main(["admin", "create-key", "--owner", "dave"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert world.keys.owner_of(key) == "dave"
    assert main(["admin", "list-keys", "--table", API_KEYS_TABLE]) == 0
    listing = capsys.readouterr().out
    key_id = hash_key(key)[:12]
    assert key_id in listing and "dave" in listing and key not in listing
    assert main(["admin", "revoke-key", key_id]) == 0
    assert world.keys.owner_of(key) is None
    assert main(["admin", "revoke-key", key_id]) == 1
    assert main(["admin", "create-key", "--owner", "bad owner;"]) == 2


def test_admin_needs_a_table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_KEYS_TABLE_NAME", raising=False)
    assert main(["admin", "list-keys"]) == 2
    assert "API_KEYS_TABLE_NAME" in capsys.readouterr().err


def test_keys_are_distinct_hashed_and_revocable(world: ApiWorld) -> None:
    store = ApiKeyStore(API_KEYS_TABLE)
    first, second = store.create("erin"), store.create("erin")
    assert first.key != second.key and first.key.startswith("srk_")
    assert store.owner_of(first.key) == store.owner_of(second.key) == "erin"
    assert store.revoke(first.record.key_id)
    assert store.owner_of(first.key) is None and store.owner_of(second.key) == "erin"
    listed = {r.key_id: r for r in store.list()}
    assert listed[first.record.key_id].revoked and not listed[second.record.key_id].revoked
    assert not store.revoke("000000000000")
    for bad in (None, "", first.key + "x", "x" * 1000, "ключ"):
        assert store.owner_of(bad) is None
    with pytest.raises(InvalidOwner):
        store.create("")
