"""Turns the governed benchmark scenario on or off in the benchmark database.

Runs in the gateway's environment (like ``bench.proxy.gateway_setup``):

    python -m bench.proxy.governance_setup on --access-key KEY --openai-endpoint URL
    python -m bench.proxy.governance_setup off --access-key KEY

``on``: 50 routing rules (49 that the benchmark's request does not match — model globs, headers,
other users' keys — before one that does: every request walks the whole list), a pool of 5
OpenAI keys for the access key (weighted), a daily USD budget and a monthly token budget, and
requests-per-minute, tokens-per-minute and concurrency limits for the key and its user; every
amount is large enough never to refuse. ``off`` removes all of it, leaving the key's single
OpenAI credential. Everything goes through the services the admin and the API use.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

POOL_SIZE = 5
RULES = 50


PARTS = ("rules", "pool", "budgets", "limits")


def _on(key_id: int, openai_endpoint: str, parts: Sequence[str] = PARTS) -> None:
    from accounts.models import AccessKey, User
    from governance import services as governance

    key = AccessKey.objects.select_related("user").get(pk=key_id)
    other = User.objects.get_or_create(email="bench-other@example.com")[0]
    if "pool" in parts:
        _pool(key, openai_endpoint)
    if "rules" in parts:
        _rules(other)
    if "budgets" in parts:
        governance.budget_create(
            scope="access_key", access_key_id=key.pk, period="day", limit_usd=1_000_000
        )
        governance.budget_create(
            scope="user", user_id=key.user_id, period="month", limit_tokens=10**12
        )
    if "limits" in parts:
        for scope, target in (
            ("access_key", {"access_key_id": key.pk}),
            ("user", {"user_id": key.user_id}),
        ):
            governance.rate_limit_create(
                scope=scope,
                requests_per_minute=10**8,
                tokens_per_minute=10**12,
                concurrent_requests=10**5,
                **target,
            )


def _pool(key: Any, openai_endpoint: str) -> None:
    from accounts.services import credential_pool_set_strategy, provider_credential_set

    for index in range(1, POOL_SIZE):
        provider_credential_set(
            provider="openai",
            secret=f"sk-bench-openai-pool-{index}",
            access_key=key,
            endpoint_url=openai_endpoint,
            label=f"pool member {index}",
            weight=index + 1,
            add=True,
        )
    credential_pool_set_strategy(provider="openai", strategy="weighted")


def _rules(other: Any) -> None:
    from proxy.models import RoutingRule
    from proxy.rule_services import TargetSpec, routing_rule_save

    for index in range(RULES - 1):
        kind = index % 3
        rule = RoutingRule(name=f"bench rule {index}", position=index)
        if kind == 0:
            rule.model_pattern = f"team{index}-*"
        elif kind == 1:
            rule.header_name = "x-gateway-route"
            rule.header_value = f"lane-{index}"
        else:
            rule.user = other
            rule.model_pattern = "gpt-*"
        routing_rule_save(rule, [TargetSpec("ollama", f"model-{index}")])
    routing_rule_save(
        RoutingRule(name="bench: gpt to the pool", position=RULES, model_pattern="gpt-*"),
        [TargetSpec("openai", "")],
    )


def _off(key_id: int) -> None:
    from accounts.models import CredentialPool, ProviderCredential
    from accounts.services import provider_credential_delete
    from governance.models import Budget, RateLimit
    from proxy.models import RoutingRule
    from proxy.rule_services import routing_rule_delete

    for rule in RoutingRule.objects.all():
        routing_rule_delete(rule)
    members = ProviderCredential.objects.filter(
        access_key_id=key_id, provider="openai", label__startswith="pool member"
    )
    for credential in members:
        provider_credential_delete(credential=credential)
    CredentialPool.objects.filter(provider="openai").delete()
    from governance import services as governance

    for budget in Budget.objects.all():
        governance.budget_delete(budget=budget)
    for limit in RateLimit.objects.all():
        governance.rate_limit_delete(limit=limit)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.governance_setup")
    parser.add_argument("state", choices=("on", "off"))
    parser.add_argument("--access-key", required=True, help="the benchmark's key (plaintext)")
    parser.add_argument("--openai-endpoint", default="")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()
    from accounts.crypto import access_key_prefix
    from accounts.models import AccessKey

    key_id = AccessKey.objects.get(prefix=access_key_prefix(args.access_key)).pk
    _off(key_id)
    if args.state == "on":
        _on(key_id, args.openai_endpoint, [part for part in args.parts.split(",") if part])
    sys.stdout.write(f"governance {args.state}\n")


if __name__ == "__main__":
    main()
