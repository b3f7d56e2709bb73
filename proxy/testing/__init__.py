"""Test and benchmark support for the proxy: fake upstreams and the harnesses around them.

- `base`: `FakeServer`, what every fake server shares (life cycle, gauges, history, waits, the
  ASGI entry point, the command line).
- `fake_upstream`: the Anthropic + Bedrock server (`FakeUpstream`) and its command line.
- `provider_server`, `fake_openai`, `fake_gemini`, `fake_ollama`: the provider fakes.
- `answers`: `ScriptedAnswer` and its renderings in each wire format (pure functions).
- `faults`: programmable faults (HTTP errors, slow first byte, dropped connections, mid-stream
  failures) and their per-upstream queues.
- `records`: routing, `RecordedRequest` and stream `Pacing`.
- `exchange`: writing one response (whole or streamed) and the stream frame encoders.
- `server`: the uvicorn runner that also reports connections.
- `eventstream`: an encoder for AWS eventstream frames.
- `fixtures`: pytest fixtures that app conftests import.
- `processes`: real gateway worker processes and `manage.py` runs on the test database.
- `metadata`: `KeyMetadata` / `ResolvedCredential` builders for planning tests.
- `rule_checks`: the refused-then-accepted check of the provider fakes' validation rules.

The names below are re-exported lazily so that `python -m proxy.testing.fake_upstream` does not
import the module it is about to run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.testing.answers import ScriptedAnswer
    from proxy.testing.fake_upstream import FakeUpstream
    from proxy.testing.faults import (
        AnthropicStreamError,
        BedrockStreamException,
        Delay,
        DropConnection,
        Fault,
        HttpError,
        StreamCut,
    )
    from proxy.testing.records import Pacing, RecordedRequest

_EXPORTS = {
    "ScriptedAnswer": "proxy.testing.answers",
    "FakeUpstream": "proxy.testing.fake_upstream",
    "Pacing": "proxy.testing.records",
    "RecordedRequest": "proxy.testing.records",
    "AnthropicStreamError": "proxy.testing.faults",
    "BedrockStreamException": "proxy.testing.faults",
    "Delay": "proxy.testing.faults",
    "DropConnection": "proxy.testing.faults",
    "Fault": "proxy.testing.faults",
    "HttpError": "proxy.testing.faults",
    "StreamCut": "proxy.testing.faults",
}

__all__ = [
    "AnthropicStreamError",
    "BedrockStreamException",
    "Delay",
    "DropConnection",
    "FakeUpstream",
    "Fault",
    "HttpError",
    "Pacing",
    "RecordedRequest",
    "ScriptedAnswer",
    "StreamCut",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'proxy.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
