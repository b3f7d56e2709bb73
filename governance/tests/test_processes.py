"""Limits and budgets hold across real gateway processes: two uvicorn processes on one
PostgreSQL database and one Redis (run with DATABASE_URL and REDIS_URL set), or one process on
the embedded default (SQLite, no Redis). Keys and rules are made by manage.py in processes of
their own; the upstream is the fake Anthropic server, slowed so that requests overlap.

What is measured is printed: how many of 20 concurrent requests each limit admitted, and how
far a budget worth one request was overspent (the bound stated in the README: less than one
request's reservation, i.e. nothing when reservations cover the actual usage).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import httpx
import pytest
import pytest_django
from django.core.management import call_command

from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import Delay
from proxy.testing.processes import Deployment, gateway_processes, make_deployment

pytestmark = pytest.mark.django_db(transaction=True)

TOKENS_PER_REQUEST = 14  # what the fake reports for every answer: 11 in, 3 out
CONCURRENT = 20


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    """The fake Anthropic + Bedrock server every gateway process of the module sends to."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: None, upstream: FakeUpstream
) -> Deployment:
    return make_deployment(
        tmp_path_factory.mktemp("governance"),
        GATEWAY_ANTHROPIC_BASE_URL=upstream.base_url,
        GATEWAY_BEDROCK_ENDPOINT_URL=upstream.base_url,
    )


@pytest.fixture(scope="module")
def gateways(
    deployment: Deployment, django_db_blocker: pytest_django.DjangoDbBlocker
) -> Iterator[list[str]]:
    """Two gateway processes with PostgreSQL and Redis; one on the embedded default."""
    try:
        with gateway_processes(deployment, 2 if deployment.shared else 1) as urls:
            yield urls
    finally:
        if "DATABASE_URL" in deployment.env:
            # On PostgreSQL the processes share the test database, and on their way out they
            # write the usage they still held: after the last test's tables were emptied, so
            # the next module's first test would find it. Empty them again.
            with django_db_blocker.unblock():
                call_command("flush", interactive=False, verbosity=0)


def _fire(gateways: list[str], key: str, count: int = CONCURRENT) -> list[httpx.Response]:
    """``count`` requests at once, spread over the gateway processes in turn."""
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"}

    def post(index: int) -> httpx.Response:
        url = f"{gateways[index % len(gateways)]}/ak/{key}/v1/messages"
        return httpx.post(url, json=body, headers=headers, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


def _report(capsys: pytest.CaptureFixture[str], gateways: list[str], what: str) -> None:
    with capsys.disabled():
        print(f"\n[governance, {len(gateways)} process(es)] {what}")  # noqa: T201


def _slow_fake(upstream: FakeUpstream) -> None:
    upstream.reset()
    upstream.answer = ScriptedAnswer.text("ok", usage={"input_tokens": 11, "output_tokens": 3})
    upstream.set_default_fault("anthropic", Delay(delay=0.5))


def test_a_10_rpm_limit_admits_exactly_10_of_20_concurrent_requests(
    deployment: Deployment,
    gateways: list[str],
    upstream: FakeUpstream,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = deployment.create_key("rpm@example.com")
    key_id = deployment.key_id(key)
    deployment.shell(
        "from governance.services import rate_limit_create;"
        f"rate_limit_create(scope='access_key', access_key_id={key_id}, requests_per_minute=10)"
    )
    _slow_fake(upstream)
    time.sleep(1.5)  # the change reaches the running processes (key-cache invalidation)
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60 + 0.2)
    answers = _fire(gateways, key)
    statuses = sorted(answer.status_code for answer in answers)
    _report(capsys, gateways, f"10 RPM: {statuses.count(200)} of {CONCURRENT} admitted")
    assert statuses == [200] * 10 + [429] * 10
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1


def test_a_budget_worth_one_request_is_not_overspent_by_20_concurrent_requests(
    deployment: Deployment,
    gateways: list[str],
    upstream: FakeUpstream,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = deployment.create_key("budget@example.com")
    key_id = deployment.key_id(key)
    deployment.shell(
        "from governance.services import budget_create;"
        f"budget_create(scope='access_key', access_key_id={key_id}, period='day',"
        f" limit_tokens={TOKENS_PER_REQUEST})"
    )
    _slow_fake(upstream)
    time.sleep(1.5)
    answers = _fire(gateways, key)
    admitted = sum(1 for answer in answers if answer.status_code == 200)
    refused = [answer for answer in answers if answer.status_code == 429]
    assert admitted + len(refused) == CONCURRENT
    overspend = admitted * TOKENS_PER_REQUEST - TOKENS_PER_REQUEST
    # The bound: less than one request's reservation (its estimated input + max_tokens 50);
    # the reservation covers the actual 14 tokens, so no second request can start.
    _report(
        capsys, gateways, f"budget of 1 request: {admitted} admitted, overspend {overspend} tokens"
    )
    assert admitted == 1
    assert refused[0].json()["error"]["type"] == "rate_limit_error"
    # Once settled, the budget is spent: later requests are refused too.
    deadline = time.monotonic() + 5
    while True:
        later = _fire(gateways, key, count=len(gateways))
        if all(answer.status_code == 429 for answer in later):
            break
        assert time.monotonic() < deadline
    assert "resets at" in later[0].json()["error"]["message"]
