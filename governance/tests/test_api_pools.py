"""The management API of key pools: credentials as pool members (create adds, PATCH sets weight
and limits), pools with their strategy and members' state, and the state endpoint's cooldowns."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from accounts.models import ProviderCredential
from governance.tests.test_api import Api, _bad, tokens  # noqa: F401 (fixture)
from proxy.pools.state import pool_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Api:
    return Api()


def _create(api: Api, secret: str, **fields: Any) -> dict[str, Any]:
    response = api.call("post", "credentials", {"provider": "openai", "secret": secret, **fields})
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_three_keys_make_a_weighted_pool(api: Api) -> None:
    ids = [
        _create(api, f"sk-pool-key-{n}-0123456789", weight=weight, label=f"key {n}")["id"]
        for n, weight in ((1, 5), (2, 3), (3, 2))
    ]
    assert ProviderCredential.objects.filter(provider="openai").count() == 3  # none replaced
    strategy = api.call("put", "pools/openai/strategy", {"strategy": "weighted"})
    assert strategy.status_code == 200, strategy.content
    assert strategy.json() == {"provider_key": "openai", "strategy": "weighted"}
    (pool,) = api.call("get", "pools").json()
    assert (pool["provider_key"], pool["scope"], pool["strategy"]) == (
        "openai",
        "global",
        "weighted",
    )
    assert [m["id"] for m in pool["members"]] == ids
    assert [m["weight"] for m in pool["members"]] == [5, 3, 2]
    changed = api.call("patch", f"credentials/{ids[0]}", {"weight": 1, "rpm_limit": 60})
    assert changed.status_code == 200, changed.content
    assert (changed.json()["weight"], changed.json()["rpm_limit"]) == (1, 60)
    cleared = api.call("patch", f"credentials/{ids[0]}", {"rpm_limit": None, "label": "main"})
    assert (cleared.json()["rpm_limit"], cleared.json()["label"], cleared.json()["weight"]) == (
        None,
        "main",
        1,
    )


def test_pool_settings_are_validated(api: Api) -> None:
    _bad(
        api.call("post", "credentials", {"provider": "openai", "secret": "sk-x" * 5, "weight": 0}),
        "weight",
    )
    only = _create(api, "sk-only-member-0123456789")
    _bad(api.call("patch", f"credentials/{only['id']}", {"weight": 0}), "weight")
    _bad(api.call("patch", f"credentials/{only['id']}", {"max_concurrency": 0}), "max_concurrency")
    _bad(api.call("patch", f"credentials/{only['id']}", {"tpm_limit": -5}), "tpm_limit")
    _create(api, "sk-second-member-0123456789")
    # With a weighted member beside it, a standby of weight 0 is fine.
    assert api.call("patch", f"credentials/{only['id']}", {"weight": 0}).status_code == 200
    _bad(api.call("put", "pools/openai/strategy", {"strategy": "fastest"}), "strategy")
    _bad(api.call("put", "pools/generic/strategy", {"strategy": "weighted"}), "provider_key")
    _bad(api.call("put", "pools/Not%20A%20Key/strategy", {"strategy": "weighted"}), "provider_key")
    assert api.call("patch", "credentials/424242", {"weight": 2}).status_code == 404


def test_a_generic_servers_pools_are_set_by_its_name(api: Api) -> None:
    assert (
        api.call("put", "pools/vllm/strategy", {"strategy": "least_in_flight"}).status_code == 200
    )
    api.call(
        "post",
        "credentials",
        {"provider": "generic", "name": "vllm", "endpoint_url": "http://vllm:8000"},
    )
    (pool,) = api.call("get", "pools?provider=generic").json()
    assert (pool["provider_key"], pool["strategy"]) == ("vllm", "least_in_flight")


def test_state_shows_cooldowns_and_why_the_gateway_disabled_a_key(api: Api) -> None:
    cooling = _create(api, "sk-cooling-0123456789")
    disabled = _create(api, "sk-disabled-0123456789")
    ProviderCredential.objects.filter(pk=disabled["id"]).update(
        enabled=False, disabled_reason="quota exhausted: 429 insufficient_quota: out of credit"
    )

    async def cool_down() -> None:
        # In an event loop, as in the gateway: the cooldown is published to Redis if any.
        pool_state.extend_cooldown(cooling["id"], until=time.time() + 40, reason="openai_429")
        pool_state.started(cooling["id"], "request-1", time.time())
        await pool_state.wait_idle()
        await pool_state.sync(time.time())  # sends the in-flight count (nothing without Redis)

    asyncio.run(cool_down())
    state = api.call("get", "state").json()
    by_id = {entry["id"]: entry for entry in state["credentials"]}
    assert by_id[cooling["id"]]["cooldown_until"] is not None
    assert by_id[cooling["id"]]["cooldown_reason"] == "openai_429"
    assert by_id[cooling["id"]]["in_flight"] == 1
    assert by_id[disabled["id"]]["enabled"] is False
    assert by_id[disabled["id"]]["disabled_reason"].startswith("quota exhausted")
