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
    Deployment,
    deployment,
    gateways,
)
from proxy.testing.answers import ScriptedAnswer

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


def _sent_models(deployment: Deployment) -> list[str]:  # noqa: F811
    return [
        json.loads(request.body)["model"]
        for request in deployment.fake.requests_to("anthropic")
        if request.body
    ]


def test_a_rule_saved_elsewhere_routes_every_process_within_two_seconds(
    deployment: Deployment,  # noqa: F811
    gateways: list[str],  # noqa: F811
) -> None:
    key, _ = deployment.create_key("routing@example.com")
    deployment.fake.reset()
    deployment.fake.answer = ScriptedAnswer.text("ok")
    # Each process loads its (empty) rule table and routes by default: the model as sent.
    for gateway in gateways:
        assert _ask(gateway, key).status_code == 200
    assert _sent_models(deployment) == ["team-default"] * len(gateways)

    deployment.shell(
        "from proxy.models import RoutingRule;"
        "from proxy.rule_services import TargetSpec, routing_rule_save;"
        "routing_rule_save(RoutingRule(name='team', model_pattern='team-*'),"
        " [TargetSpec('anthropic', 'claude-haiku-4-5')])"
    )
    saved_at = time.monotonic()
    for gateway in gateways:
        while True:
            deployment.fake.reset()
            deployment.fake.answer = ScriptedAnswer.text("ok")
            assert _ask(gateway, key).status_code == 200
            if _sent_models(deployment) == ["claude-haiku-4-5"]:
                break
            assert time.monotonic() - saved_at < 2.5, f"{gateway} still routes by default"
            time.sleep(0.1)
