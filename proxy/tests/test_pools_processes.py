"""Key pools across real gateway processes: two uvicorn workers on one PostgreSQL database and
one Redis (run with DATABASE_URL and REDIS_URL set), or one process on the embedded default. The
upstream is the fake OpenAI server of this test process; which key each request used is read
from its records.

- a cooldown one worker sets after a 429 is honoured by the other;
- a credential disabled for an exhausted quota stays out of rotation in every worker until it
  is enabled again (here through manage.py, as an admin would).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from governance.tests.test_processes import (  # noqa: F401 (fixtures)
    gateways,
    upstream,
)
from proxy.testing.fake_openai import FakeOpenAI, insufficient_quota, rate_limited
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.processes import Deployment, make_deployment
from proxy.testing.provider_server import key_sha256

pytestmark = pytest.mark.django_db(transaction=True)

KEY_A = "sk-process-pool-member-a"
KEY_B = "sk-process-pool-member-b"


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    django_db_setup: None,
    upstream: FakeUpstream,  # noqa: F811
    openai_fake: FakeOpenAI,
) -> Deployment:
    return make_deployment(
        tmp_path_factory.mktemp("pools"),
        GATEWAY_ANTHROPIC_BASE_URL=upstream.base_url,
        GATEWAY_BEDROCK_ENDPOINT_URL=upstream.base_url,
        GATEWAY_OPENAI_BASE_URL=openai_fake.base_url,
    )


def _pool(deployment: Deployment, email: str) -> tuple[str, dict[str, int]]:
    """A key and a global pool of the two OpenAI keys (A first); their credential ids."""
    key = deployment.create_key(email)
    ids = deployment.shell(
        "from accounts.models import ProviderCredential;"
        "from accounts.services import provider_credential_set;"
        "ProviderCredential.objects.filter(provider='openai').delete();"
        f"a, _ = provider_credential_set(provider='openai', secret={KEY_A!r}, add=True);"
        f"b, _ = provider_credential_set(provider='openai', secret={KEY_B!r}, add=True);"
        "print(a.pk, b.pk)"
    )
    first, second = ids.strip().splitlines()[-1].split()
    return key, {KEY_A: int(first), KEY_B: int(second)}


def _ask(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def _used(fake: FakeOpenAI, start: int) -> list[str]:
    names = {key_sha256(KEY_A): "A", key_sha256(KEY_B): "B"}
    return [names.get(r.key_sha256 or "", "?") for r in fake.requests[start:]]


def _state(deployment: Deployment, credential_id: int) -> tuple[bool, str]:
    out = deployment.shell(
        "from accounts.models import ProviderCredential;"
        f"c = ProviderCredential.objects.get(pk={credential_id});"
        "print(c.enabled, c.disabled_reason, sep='|')"
    )
    enabled, _, reason = out.rstrip("\n").splitlines()[-1].partition("|")
    return enabled == "True", reason


def test_a_cooldown_set_by_one_worker_is_honoured_by_the_other(
    deployment: Deployment,
    gateways: list[str],  # noqa: F811 (the fixture)
    openai_fake: FakeOpenAI,
) -> None:
    key, ids = _pool(deployment, "cooldown@example.com")
    openai_fake.reset()
    openai_fake.fail_key(KEY_A, rate_limited(retry_after=60))
    time.sleep(1.5)  # the new credentials reach the running processes
    first = _ask(gateways[0], key)
    assert first.status_code == 200
    assert _used(openai_fake, 0) == ["A", "B"]  # A first (round robin's turn 0), then B
    time.sleep(1.5)  # one shared-state read later
    start = len(openai_fake.requests)
    # Each worker's round robin would start with A again: only the cooldown keeps it away.
    for index in range(8):
        assert _ask(gateways[index % len(gateways)], key).status_code == 200
    assert _used(openai_fake, start) == ["B"] * 8
    assert _state(deployment, ids[KEY_A]) == (True, "")  # a rate limit disables nothing


def test_a_quota_disabled_credential_stays_out_until_enabled_again(
    deployment: Deployment,
    gateways: list[str],  # noqa: F811 (the fixture)
    openai_fake: FakeOpenAI,
) -> None:
    key, ids = _pool(deployment, "quota@example.com")
    openai_fake.reset()
    openai_fake.fail_key(KEY_A, insufficient_quota())
    time.sleep(1.5)
    assert _ask(gateways[-1], key).status_code == 200
    assert _used(openai_fake, 0) == ["A", "B"]
    deadline = time.monotonic() + 10
    while _state(deployment, ids[KEY_A])[0]:
        assert time.monotonic() < deadline, "the credential was not disabled"
        time.sleep(0.2)
    assert _state(deployment, ids[KEY_A])[1].startswith("quota exhausted: 429 insufficient_quota")
    # The provider would accept A again, but it stays out of rotation: nobody enabled it.
    openai_fake.fail_key(KEY_A, None)
    time.sleep(1.5)
    start = len(openai_fake.requests)
    for index in range(8):
        assert _ask(gateways[index % len(gateways)], key).status_code == 200
    assert _used(openai_fake, start) == ["B"] * 8
    deployment.shell(
        "from accounts.models import ProviderCredential;"
        "from accounts.services import provider_credential_set_enabled;"
        f"provider_credential_set_enabled(credential=ProviderCredential.objects.get(pk={ids[KEY_A]}),"
        " enabled=True)"
    )
    time.sleep(1.5)  # the invalidation reaches every process
    start = len(openai_fake.requests)
    for index in range(8):
        assert _ask(gateways[index % len(gateways)], key).status_code == 200
    # Back in turn (the first request of a worker may still hold the pool without it).
    assert _used(openai_fake, start).count("A") >= 3
