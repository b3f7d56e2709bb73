"""A routing rule saved in one process routes requests in every running gateway process within
two seconds: two uvicorn processes on PostgreSQL + Redis (one on the embedded default), the rule
made by ``manage.py shell`` in a third process, the fake Anthropic server recording the model
each request was sent with."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from governance.tests.test_processes import (  # noqa: F401 (fixtures)
    deployment,
    gateways,
    upstream,
)
from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.processes import Deployment

pytestmark = pytest.mark.django_db(transaction=True)


def _ask(gateway: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway}/ak/{key}/v1/messages",
        json={
            "model": "team-default",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"},
        timeout=30,
    )


def _sent_models(upstream: FakeUpstream) -> list[str]:  # noqa: F811
    return [
        json.loads(request.body)["model"]
        for request in upstream.requests_to("anthropic")
        if request.body
    ]


def test_a_rule_saved_elsewhere_routes_every_process_within_two_seconds(
    deployment: Deployment,  # noqa: F811
    gateways: list[str],  # noqa: F811
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    key = deployment.create_key("routing@example.com")
    upstream.reset()
    upstream.answer = ScriptedAnswer.text("ok")
    # Each process loads its (empty) rule table and routes by default: the model as sent.
    for gateway in gateways:
        assert _ask(gateway, key).status_code == 200
    assert _sent_models(upstream) == ["team-default"] * len(gateways)

    deployment.shell(
        "from proxy.models import RoutingRule;"
        "from proxy.rule_services import TargetSpec, routing_rule_save;"
        "routing_rule_save(RoutingRule(name='team', model_pattern='team-*'),"
        " [TargetSpec('anthropic', 'claude-haiku-4-5')])"
    )
    saved_at = time.monotonic()
    for gateway in gateways:
        while True:
            upstream.reset()
            upstream.answer = ScriptedAnswer.text("ok")
            assert _ask(gateway, key).status_code == 200
            if _sent_models(upstream) == ["claude-haiku-4-5"]:
                break
            assert time.monotonic() - saved_at < 2.5, f"{gateway} still routes by default"
            time.sleep(0.1)
