"""``manage.py set_provider_credential PROVIDER [--secret-stdin]``: store an upstream credential.

    set_provider_credential anthropic|openai|gemini --secret-stdin [--endpoint URL]
    set_provider_credential bedrock --secret-stdin [--region R] [--mode M] [--endpoint URL]
    set_provider_credential generic --name NAME --endpoint URL [--secret-stdin]
    set_provider_credential ollama [--endpoint URL]

    set_provider_credential openai --secret-stdin --add [--weight W] [--rpm N] [--tpm N]
        [--concurrency N]

The secret is read from stdin (never from the command line, where it would land in shell
history and process lists). Without --user or --access-key the credential is the global
default. An existing credential of the same provider (and name) and scope is replaced, secret
included, unless --add is given: then it joins that scope's key pool beside the others (a scope
with a pool of several is never replaced: change its members in the admin or the API). Which
options a provider takes is checked by accounts.services, as in the admin.
"""

from __future__ import annotations

import getpass
import sys
from argparse import ArgumentParser
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError

from accounts.models import AccessKey, BedrockApiMode, Provider, User
from accounts.selectors import access_key_get_by_prefix, user_get_by_email
from accounts.services import (
    AccountsError,
    CredentialInvalid,
    provider_credential_set,
    provider_secret_rule,
)

# A secret is an API key or token: anything longer is a mistake (a file piped in by accident).
_MAX_SECRET_CHARS = 16 * 1024
# The option that sets each field, to name it in errors.
_OPTIONS = {
    "provider": "PROVIDER",
    "name": "--name",
    "secret": "--secret-stdin",
    "region": "--region",
    "api_mode": "--mode",
    "endpoint_url": "--endpoint",
    "fallback_model": "--fallback-model",
    "label": "--label",
    "weight": "--weight",
    "rpm_limit": "--rpm",
    "tpm_limit": "--tpm",
    "max_concurrency": "--concurrency",
}


class Command(BaseCommand):
    help = (
        "Create or replace a provider credential (--add: add one to its key pool); the secret "
        "is read from stdin."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("provider", choices=Provider.values, help="Which upstream.")
        parser.add_argument(
            "--secret-stdin",
            action="store_true",
            help="Read the secret from stdin (secrets never go on the command line). Required "
            "for anthropic, bedrock, openai and gemini; optional for generic; ollama takes none.",
        )
        parser.add_argument(
            "--name",
            default="",
            help="Generic servers: the name clients use in model ids (vllm/<model>).",
        )
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--user", metavar="EMAIL", help="Scope it to one user.")
        scope.add_argument("--access-key", metavar="PREFIX", help="Scope it to one access key.")
        parser.add_argument("--region", default="", help="Bedrock: AWS region, e.g. us-east-1.")
        parser.add_argument(
            "--mode",
            choices=BedrockApiMode.values,
            default="",
            help="Bedrock: API used for fallback requests (default: invoke).",
        )
        parser.add_argument(
            "--endpoint",
            default="",
            metavar="URL",
            help="Endpoint override; for generic servers the base URL (required), e.g. "
            "https://api.groq.com/openai.",
        )
        parser.add_argument("--label", default="", help="A name for the credential.")
        parser.add_argument(
            "--add",
            action="store_true",
            help="Add another credential to this scope's key pool instead of replacing.",
        )
        parser.add_argument(
            "--weight",
            type=int,
            default=1,
            help="Share of the pool's requests under the weighted strategy (0: a standby).",
        )
        parser.add_argument("--rpm", type=int, default=None, help="Requests per minute, at most.")
        parser.add_argument("--tpm", type=int, default=None, help="Tokens per minute, at most.")
        parser.add_argument(
            "--concurrency", type=int, default=None, help="Requests in flight at once, at most."
        )
        parser.add_argument(
            "--fallback-model",
            default="",
            metavar="MODEL",
            help="Bedrock model for requested models missing from the model map.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        provider = options["provider"]
        rule = provider_secret_rule(provider)
        if rule == "none" and options["secret_stdin"]:
            raise CommandError(f"{Provider(provider).label} takes no secret: drop --secret-stdin.")
        if rule == "required" and not options["secret_stdin"]:
            raise CommandError(
                "Pass the secret on stdin with --secret-stdin; it never goes on the command line."
            )
        if options["user"] and options["access_key"]:
            raise CommandError("Give --user or --access-key, not both.")
        user, access_key = self._scope(options["user"], options["access_key"])
        secret = ""
        if options["secret_stdin"]:
            secret = self._read_secret(options.get("stdin") or sys.stdin)
        if provider == Provider.BEDROCK and not (options["region"] or options["endpoint"]):
            self.stderr.write("Warning: a Bedrock credential without --region or --endpoint.")
        if provider == Provider.GENERIC and not secret:
            self.stderr.write("Note: no secret; requests to this server carry no API key.")
        try:
            credential, created = provider_credential_set(
                provider=provider,
                secret=secret,
                user=user,
                access_key=access_key,
                name=options["name"],
                region=options["region"],
                api_mode=options["mode"],
                endpoint_url=options["endpoint"],
                label=options["label"],
                fallback_model=options["fallback_model"],
                weight=options["weight"],
                rpm_limit=options["rpm"],
                tpm_limit=options["tpm"],
                max_concurrency=options["concurrency"],
                add=options["add"],
            )
        except CredentialInvalid as exc:
            raise CommandError(
                " ".join(
                    f"{_OPTIONS.get(field, field)}: {message}"
                    for field, message in exc.errors.items()
                )
            ) from exc
        except AccountsError as exc:
            raise CommandError(str(exc)) from exc
        fingerprint = f", fingerprint {credential.fingerprint}" if credential.fingerprint else ""
        self.stdout.write(
            f"{'Created' if created else 'Replaced'} {credential}{fingerprint} "
            f"(credential #{credential.pk})."
        )

    def _scope(self, email: str | None, prefix: str | None) -> tuple[User | None, AccessKey | None]:
        if email:
            user = user_get_by_email(email)
            if user is None:
                raise CommandError(f"No user with email {email!r}.")
            return user, None
        if prefix:
            key = access_key_get_by_prefix(prefix)
            if key is None:
                raise CommandError(f"No access key with prefix {prefix!r}.")
            return None, key
        return None, None

    def _read_secret(self, stream: TextIO) -> str:
        if stream.isatty():
            secret = getpass.getpass("Secret: ")
        else:
            secret = stream.read(_MAX_SECRET_CHARS + 1)
            if len(secret) > _MAX_SECRET_CHARS:
                raise CommandError(f"The secret on stdin is over {_MAX_SECRET_CHARS} characters.")
        if not secret.strip():
            raise CommandError("The secret on stdin is empty; nothing was stored.")
        # One trailing line break comes from `echo` or a file; anything else is the secret's.
        return secret.removesuffix("\n").removesuffix("\r")
