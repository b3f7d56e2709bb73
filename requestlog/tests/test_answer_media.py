"""Media in answers: an OpenAI spoken answer (whole and streamed), images an OpenAI-compatible
server returns, Gemini ``inlineData`` parts — saved to the media store and referred to by hash,
like the media of requests. Answer shapes are built with the official SDKs' own types, so the
field names are the providers' own."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai import types as genai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from accounts.keycache import invalidate_key_metadata
from accounts.services import provider_credential_set
from proxy.testing.exchange import Exchange
from proxy.testing.fake_openai import FakeOpenAI
from proxy.testing.records import Pacing
from proxy.tests.conftest import GatewayServer, KeyHolder
from requestlog.capture import decode_body
from requestlog.media import MEDIA_REFERENCE, media_extract, media_path
from requestlog.models import MediaObject, RequestLog, RequestMedia
from requestlog.reassembly import openai_chat_completion
from requestlog.selectors import request_log_bodies
from requestlog.tests.factories import logged_request
from usage.recording import flush_usage_events

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40))
# Streamed speech is raw 16-bit PCM (OpenAI streams only ``pcm16``): no header to sniff.
PCM = bytes(range(256)) * 3


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _media_dir(settings: Any, tmp_path: Path) -> Path:
    settings.GATEWAY_DATA_DIR = tmp_path
    return tmp_path / "media"


def _spoken_completion(audio: bytes) -> dict[str, Any]:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-audio-preview",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "audio": {
                            "id": "audio_1",
                            "data": b64(audio),
                            "expires_at": 2,
                            "transcript": "Hello there.",
                        },
                    },
                }
            ],
        }  # fmt: skip
    ).model_dump(mode="json", exclude_none=True)


def _spoken_chunks(audio: bytes, pieces: int, *, split_encoding: bool) -> list[dict[str, Any]]:
    """Chunks of a streamed spoken answer: ``pieces`` parts of data and transcript, then the
    expiry alone. ``split_encoding``: one encoding cut in pieces, else each piece encoded."""
    size = -(-len(audio) // pieces)
    if split_encoding:
        whole = b64(audio)
        step = -(-len(whole) // pieces // 4) * 4
        data = [whole[i : i + step] for i in range(0, len(whole), step)]
    else:
        data = [b64(audio[i : i + size]) for i in range(0, len(audio), size)]
    words = ["Hello", " there", "."]
    deltas: list[dict[str, Any]] = [{"role": "assistant", "audio": {"id": "audio_1"}}]
    deltas += [
        {"audio": {"data": piece, "transcript": words[i] if i < len(words) else ""}}
        for i, piece in enumerate(data)
    ]
    deltas.append({"audio": {"expires_at": 2}})
    chunks = [
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
         "model": "gpt-4o-audio-preview",
         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        for delta in deltas
    ]  # fmt: skip
    chunks[-1]["choices"][0]["finish_reason"] = "stop"
    return [
        ChatCompletionChunk.model_validate(chunk).model_dump(mode="json", exclude_none=True)
        for chunk in chunks
    ]


def _sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks) + (
        b"data: [DONE]\n\n"
    )


# --- extraction and reassembly ------------------------------------------------------------------


def test_the_audio_of_an_openai_answer_is_replaced_by_a_reference(_media_dir: Path) -> None:
    answer, found = media_extract(_spoken_completion(WAV))
    audio = answer["choices"][0]["message"]["audio"]
    assert audio["data"] == MEDIA_REFERENCE + sha(WAV)
    assert audio["transcript"] == "Hello there." and audio["id"] == "audio_1"
    assert found == [{"sha256": sha(WAV), "content_type": "audio/wav", "size": len(WAV)}]
    assert (_media_dir / media_path(sha(WAV))).read_bytes() == WAV


def test_an_assistant_audio_reference_in_a_request_is_left_alone(_media_dir: Path) -> None:
    # A client replays an earlier spoken answer by id only: nothing to store.
    body = {"messages": [{"role": "assistant", "audio": {"id": "audio_1"}}]}
    assert media_extract(body) == (
        {"messages": [{"role": "assistant", "audio": {"id": "audio_1"}}]},
        [],
    )


def test_images_an_openai_compatible_server_returns_are_stored(_media_dir: Path) -> None:
    answer = {
        "choices": [
            {"message": {"role": "assistant", "content": "Here it is.", "images": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}}
            ]}}
        ]
    }  # fmt: skip
    out, found = media_extract(answer)
    image = out["choices"][0]["message"]["images"][0]["image_url"]
    assert image["url"] == MEDIA_REFERENCE + sha(PNG)
    assert [item["content_type"] for item in found] == ["image/png"]


@pytest.mark.parametrize("by_alias", [True, False], ids=["inlineData", "inline_data"])
def test_gemini_inline_data_in_candidates_is_stored(_media_dir: Path, by_alias: bool) -> None:
    response = genai.GenerateContentResponse(
        candidates=[
            genai.Candidate(
                content=genai.Content(
                    role="model",
                    parts=[
                        genai.Part(text="A cat:"),
                        # Claims JPEG, holds PNG: stored as what it is.
                        genai.Part(inline_data=genai.Blob(mime_type="image/jpeg", data=PNG)),
                        genai.Part(inline_data=genai.Blob(mime_type="audio/wav", data=WAV)),
                    ],
                )
            )
        ]
    )
    body = json.loads(response.model_dump_json(by_alias=by_alias, exclude_none=True))
    out, found = media_extract(body)
    parts = out["candidates"][0]["content"]["parts"]
    field = "inlineData" if by_alias else "inline_data"
    assert [part[field]["data"] for part in parts[1:]] == [
        MEDIA_REFERENCE + sha(PNG),
        MEDIA_REFERENCE + sha(WAV),
    ]
    assert {item["sha256"]: item["content_type"] for item in found} == {
        sha(PNG): "image/png",
        sha(WAV): "audio/wav",
    }
    assert b64(PNG) not in json.dumps(out)


def test_gemini_url_safe_base64_is_decoded(_media_dir: Path) -> None:
    data = PNG + b"\xfb\xff\xfe" * 8  # bytes whose encoding holds "+" and "/"
    encoded = base64.urlsafe_b64encode(data).decode()
    assert "-" in encoded or "_" in encoded
    out, found = media_extract({"parts": [{"inlineData": {"mimeType": "image/png",
                                                          "data": encoded}}]})  # fmt: skip
    assert out["parts"][0]["inlineData"]["data"] == MEDIA_REFERENCE + sha(data)
    assert found[0]["size"] == len(data)


@pytest.mark.parametrize("split_encoding", [True, False], ids=["one-encoding", "per-piece"])
def test_streamed_audio_is_reassembled_whole(split_encoding: bool) -> None:
    message = openai_chat_completion(_sse(_spoken_chunks(PCM, 4, split_encoding=split_encoding)))
    assert message is not None
    [choice] = message["choices"]
    audio = choice["message"]["audio"]
    assert base64.b64decode(audio["data"]) == PCM
    assert audio["transcript"] == "Hello there."
    assert (audio["id"], audio["expires_at"], choice["finish_reason"]) == ("audio_1", 2, "stop")
    # The reassembled answer is one the SDK accepts whole.
    ChatCompletion.model_validate(
        {**message, "id": "chatcmpl-1", "created": 1, "model": "gpt-4o-audio-preview"}
    )


@pytest.mark.django_db
def test_answer_media_are_stored_once_and_referred_to_by_the_body(_media_dir: Path) -> None:
    first = logged_request(surface="chat", body={"model": "m"}, answer=_spoken_completion(WAV))
    streamed = logged_request(
        surface="chat",
        body={"model": "m"},
        answer=_sse(_spoken_chunks(WAV, 3, split_encoding=False)),
        streamed=True,
    )
    assert MediaObject.objects.get().sha256 == sha(WAV)
    assert RequestMedia.objects.count() == 2
    for log in (first, streamed):
        bodies = request_log_bodies(log)
        assert bodies is not None and bodies.media == [sha(WAV)]
        stored = json.loads(decode_body(log.body.response))
        assert stored["choices"][0]["message"]["audio"]["data"] == MEDIA_REFERENCE + sha(WAV)


# --- through the gateway ------------------------------------------------------------------------


class SpeakingOpenAI(FakeOpenAI):
    """The fake OpenAI, answering every chat request with speech (whole or streamed)."""

    speech = WAV

    async def send_json(self, exchange: Exchange, data: Any, headers: Any = None) -> None:
        if isinstance(data, dict) and data.get("object") == "chat.completion":
            data["choices"][0]["message"]["audio"] = _spoken_completion(self.speech)["choices"][0][
                "message"
            ]["audio"]
        await super().send_json(exchange, data, headers)

    async def _stream_chunks(
        self, exchange: Exchange, chunks: list[dict[str, Any]], pacing: Pacing, fault: Any
    ) -> None:
        await super()._stream_chunks(
            exchange, _spoken_chunks(self.speech, 5, split_encoding=False), pacing, fault
        )


@pytest.fixture(scope="module")
def speaking_openai() -> Iterator[SpeakingOpenAI]:
    with SpeakingOpenAI() as fake:
        yield fake


@pytest.mark.django_db(transaction=True)
def test_spoken_answers_through_the_gateway_are_logged_with_their_audio_stored(
    gateway_server: GatewayServer,
    key_holder: KeyHolder,
    speaking_openai: SpeakingOpenAI,
    settings: Any,
    _media_dir: Path,
) -> None:
    settings.GATEWAY_REQUEST_LOG_LEVEL = "full"
    settings.GATEWAY_OPENAI_BASE_URL = speaking_openai.base_url
    speaking_openai.reset()
    provider_credential_set(provider="openai", secret="sk-openai-upstream-0123456789")
    invalidate_key_metadata()
    body = {
        "model": "gpt-4o-audio-preview",
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    headers = {"authorization": f"Bearer {key_holder.plaintext}"}
    url = f"{gateway_server.base_url}/v1/chat/completions"
    whole = httpx.post(url, json=body, headers=headers, timeout=10)
    assert whole.status_code == 200, whole.text
    assert whole.json()["choices"][0]["message"]["audio"]["data"] == b64(WAV)
    streamed = httpx.post(url, json={**body, "stream": True}, headers=headers, timeout=10)
    assert streamed.status_code == 200 and b"data: [DONE]" in streamed.content
    flush_usage_events()

    logs = list(RequestLog.objects.order_by("occurred_at").select_related("body", "event"))
    assert [(log.surface, log.event.provider, log.event.streamed) for log in logs] == [
        ("chat", "openai", False),
        ("chat", "openai", True),
    ]
    for log in logs:
        answer = json.loads(decode_body(log.body.response))
        audio = answer["choices"][0]["message"]["audio"]
        assert audio["data"] == MEDIA_REFERENCE + sha(WAV)
        assert audio["transcript"] == "Hello there."
        assert b64(WAV) not in decode_body(log.body.response)
        assert request_log_bodies(log).media == [sha(WAV)]  # type: ignore[union-attr]
    assert MediaObject.objects.get().content_type == "audio/wav"
    assert (_media_dir / media_path(sha(WAV))).read_bytes() == WAV
    # The raw stream kept beside the answer refers to the audio as well, piece by piece.
    raw = decode_body(logs[1].body.stream)
    pieces = [
        chunk["choices"][0]["delta"]["audio"]["data"]
        for chunk in _spoken_chunks(WAV, 5, split_encoding=False)
        if "data" in chunk["choices"][0]["delta"].get("audio", {})
    ]
    assert len(pieces) == 5 and not any(piece in raw for piece in pieces)
    assert raw.count(MEDIA_REFERENCE + sha(WAV)) == 5 and "Hello" in raw
