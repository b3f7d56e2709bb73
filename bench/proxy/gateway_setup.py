"""Prepares the benchmark database: an access key and its provider credentials.

Runs in the gateway's environment (same DATABASE_URL, REDIS_URL and GATEWAY_DATA_DIR as the
server, so the key hash secret matches) after ``manage.py migrate``:

    python -m bench.proxy.gateway_setup --bedrock-endpoint http://127.0.0.1:PORT \
        [--openai-endpoint http://127.0.0.1:PORT2]

and prints ``{"access_key": ...}`` as its last stdout line. Every credential is scoped to the
new key:

- Bedrock (InvokeModel, the default mode): points at the fake's Bedrock side and names a
  fallback model, so no model map is needed;
- Anthropic: a stored key, used when a client sends none (an OpenAI client asking for a Claude
  model, the translation scenario); Anthropic clients send their own, which takes precedence;
- OpenAI (with ``--openai-endpoint``): a stored key whose endpoint is the fake OpenAI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

BENCH_EMAIL = "bench@example.com"
FALLBACK_MODEL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
# The fakes accept any key.
STORED_ANTHROPIC_KEY = "sk-ant-bench-stored"  # noqa: S105
STORED_OPENAI_KEY = "sk-bench-openai-stored"  # noqa: S105


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.gateway_setup")
    parser.add_argument("--bedrock-endpoint", required=True)
    parser.add_argument("--openai-endpoint", default="")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()
    from accounts.models import BedrockApiMode, Provider
    from accounts.services import access_key_create, provider_credential_set, user_get_or_create

    user, _created = user_get_or_create(email=BENCH_EMAIL, create=True)
    key, plaintext = access_key_create(user=user, label="benchmark")
    provider_credential_set(
        provider=Provider.BEDROCK,
        secret="bench-bedrock-api-key",  # noqa: S106 - the fake accepts any key
        access_key=key,
        region="us-east-1",
        api_mode=BedrockApiMode.INVOKE,
        endpoint_url=args.bedrock_endpoint,
        label="benchmark fake",
        fallback_model=FALLBACK_MODEL,
    )
    provider_credential_set(
        provider=Provider.ANTHROPIC,
        secret=STORED_ANTHROPIC_KEY,
        access_key=key,
        label="benchmark fake",
    )
    if args.openai_endpoint:
        provider_credential_set(
            provider=Provider.OPENAI,
            secret=STORED_OPENAI_KEY,
            access_key=key,
            endpoint_url=args.openai_endpoint,
            label="benchmark fake",
        )
    sys.stdout.write(json.dumps({"access_key": plaintext, "key_id": key.pk}) + "\n")


if __name__ == "__main__":
    main()
