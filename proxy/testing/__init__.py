"""Test and benchmark support for the proxy: a fake Anthropic + Bedrock upstream.

- `fake_upstream`: the HTTP server (`FakeUpstream`), its request records and its command line.
- `answers`: `ScriptedAnswer` and its renderings in each wire format (pure functions).
- `faults`: programmable faults (HTTP errors, slow first byte, dropped connections, mid-stream
  failures) and their per-upstream queues.
- `records`: routing, `RecordedRequest` and stream `Pacing`.
- `exchange`: writing one response (whole or streamed) and the stream frame encoders.
- `server`: the uvicorn runner that also reports connections.
- `eventstream`: an encoder for AWS eventstream frames.
- `fixtures`: pytest fixtures that app conftests import.

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
