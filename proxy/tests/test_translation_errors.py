"""Anthropic error bodies, status ↔ type, and Bedrock failures mapped onto them."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.translation.errors import (
    DEFAULT_THROTTLE_RETRY_AFTER_SECONDS,
    MappedError,
    bedrock_error_to_anthropic,
    bedrock_exception_name,
    error_body,
    error_type_for_status,
    is_retryable_anthropic_status,
)


def test_error_body_has_anthropic_shape() -> None:
    assert error_body("rate_limit_error", "Slow down.") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Slow down."},
    }


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        # Not in Anthropic's table: client errors stay client errors, the rest is api_error.
        (409, "invalid_request_error"),
        (422, "invalid_request_error"),
        (502, "api_error"),
        (503, "api_error"),
        (200, "api_error"),
    ],
)
def test_error_type_for_status(status: int, error_type: str) -> None:
    assert error_type_for_status(status) == error_type


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (429, True),
        (529, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (200, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, False),
        (413, False),
        (501, False),
    ],
)
def test_is_retryable_anthropic_status(status: int, retryable: bool) -> None:
    assert is_retryable_anthropic_status(status) is retryable


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "ThrottlingException",
        ),
        ("ThrottlingException", "ThrottlingException"),
        ("throttlingException", "throttlingException"),
        ("com.amazon.coral.validate#ValidationException", "ValidationException"),
        ("com.amazon#ValidationException:http://x", "ValidationException"),
        (" ValidationException ", "ValidationException"),
        ("", None),
        (None, None),
        (":http://only-a-url", None),
    ],
)
def test_bedrock_exception_name(value: str | None, name: str | None) -> None:
    assert bedrock_exception_name(value) == name


# (Bedrock exception, its Bedrock status, Anthropic status, Anthropic type): PROTOCOLS §2.
BEDROCK_TABLE = [
    ("ValidationException", 400, 400, "invalid_request_error"),
    ("AccessDeniedException", 403, 403, "permission_error"),
    ("ResourceNotFoundException", 404, 404, "not_found_error"),
    ("ModelTimeoutException", 408, 504, "timeout_error"),
    ("ModelErrorException", 424, 500, "api_error"),
    ("ModelStreamErrorException", 424, 500, "api_error"),
    ("ThrottlingException", 429, 429, "rate_limit_error"),
    ("ServiceQuotaExceededException", 400, 429, "rate_limit_error"),
    ("ModelNotReadyException", 429, 529, "overloaded_error"),
    ("ServiceUnavailableException", 503, 529, "overloaded_error"),
    ("InternalServerException", 500, 500, "api_error"),
    ("UnrecognizedClientException", 403, 403, "permission_error"),
    ("ExpiredTokenException", 403, 403, "permission_error"),
    ("InvalidSignatureException", 403, 403, "permission_error"),
    ("MissingAuthenticationTokenException", 403, 403, "permission_error"),
]


@pytest.mark.parametrize(("exception", "bedrock_status", "status", "error_type"), BEDROCK_TABLE)
def test_http_error_header_form(
    exception: str, bedrock_status: int, status: int, error_type: str
) -> None:
    mapped = bedrock_error_to_anthropic(
        status=bedrock_status,
        error_type_header=f"{exception}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        exception_type=None,
        message="Something happened.",
    )
    assert mapped.status == status
    assert mapped.body == error_body(error_type, "Something happened.")
    assert mapped.error_type == error_type
    assert mapped.message == "Something happened."


@pytest.mark.parametrize(("exception", "bedrock_status", "status", "error_type"), BEDROCK_TABLE)
def test_eventstream_lower_camel_form(
    exception: str, bedrock_status: int, status: int, error_type: str
) -> None:
    # Inside a stream there is no HTTP status, only ":exception-type: throttlingException".
    lower_camel = exception[0].lower() + exception[1:]
    mapped = bedrock_error_to_anthropic(
        status=None, error_type_header=None, exception_type=lower_camel, message="Oops."
    )
    assert (mapped.status, mapped.error_type) == (status, error_type)


def test_throttling_gets_a_synthesized_retry_after() -> None:
    mapped = bedrock_error_to_anthropic(
        status=429,
        error_type_header="ThrottlingException:http://internal.amazon.com/",
        exception_type=None,
        message="Too many requests, please wait before trying again.",
    )
    assert mapped.headers == {"retry-after": str(DEFAULT_THROTTLE_RETRY_AFTER_SECONDS)}
    custom = bedrock_error_to_anthropic(
        status=None,
        error_type_header=None,
        exception_type="throttlingException",
        message="",
        retry_after_seconds=17,
    )
    assert custom.headers == {"retry-after": "17"}


@pytest.mark.parametrize(
    "exception",
    ["ValidationException", "ModelNotReadyException", "InternalServerException"],
)
def test_only_rate_limits_carry_retry_after(exception: str) -> None:
    mapped = bedrock_error_to_anthropic(
        status=None, error_type_header=exception, exception_type=None, message="x"
    )
    assert mapped.headers == {}


@pytest.mark.parametrize(
    ("bedrock_status", "status", "error_type"),
    [
        (400, 400, "invalid_request_error"),
        # A refused gateway credential is never reported as the client's 401.
        (401, 403, "permission_error"),
        (403, 403, "permission_error"),
        (404, 404, "not_found_error"),
        (408, 504, "timeout_error"),
        (413, 413, "request_too_large"),
        (424, 500, "api_error"),
        (429, 429, "rate_limit_error"),
        (500, 500, "api_error"),
        (502, 500, "api_error"),
        (503, 529, "overloaded_error"),
        (504, 504, "timeout_error"),
        (418, 500, "api_error"),
    ],
)
def test_unknown_exception_falls_back_to_the_status(
    bedrock_status: int, status: int, error_type: str
) -> None:
    mapped = bedrock_error_to_anthropic(
        status=bedrock_status,
        error_type_header="SomethingNewException:http://x",
        exception_type=None,
        message="m",
    )
    assert (mapped.status, mapped.error_type) == (status, error_type)


def test_nothing_known_is_an_api_error() -> None:
    mapped = bedrock_error_to_anthropic(
        status=None, error_type_header=None, exception_type=None, message="broken"
    )
    assert mapped == MappedError(status=500, body=error_body("api_error", "broken"), headers={})


def test_stream_exception_type_wins_over_header_and_status() -> None:
    mapped = bedrock_error_to_anthropic(
        status=400,
        error_type_header="ValidationException",
        exception_type="serviceUnavailableException",
        message="m",
    )
    assert (mapped.status, mapped.error_type) == (529, "overloaded_error")


def test_unknown_stream_exception_uses_the_header() -> None:
    mapped = bedrock_error_to_anthropic(
        status=None,
        error_type_header="ThrottlingException",
        exception_type="brandNewException",
        message="m",
    )
    assert (mapped.status, mapped.error_type) == (429, "rate_limit_error")


@pytest.mark.parametrize(
    ("exception", "message", "expected"),
    [
        # Bedrock's wrapper is removed so the client sees Anthropic's own wording.
        (
            "ValidationException",
            "The model returned the following errors: prompt is too long: 227255 tokens > "
            "200000 maximum",
            "prompt is too long: 227255 tokens > 200000 maximum",
        ),
        # Bedrock's own wording for an oversized prompt gets Anthropic's prefix, which is what
        # Claude Code recognises to compact the conversation.
        (
            "ValidationException",
            "The model returned the following errors: Input is too long for requested model.",
            "prompt is too long: Input is too long for requested model.",
        ),
        (
            "ValidationException",
            "Input is too long for requested model.",
            "prompt is too long: Input is too long for requested model.",
        ),
        ("ValidationException", "  messages.0: blank text  ", "messages.0: blank text"),
        # The rewrite is for invalid requests only.
        (
            "InternalServerException",
            "Input is too long for requested model.",
            "Input is too long for requested model.",
        ),
        ("ValidationException", "", "The request was rejected by the upstream provider."),
        ("ThrottlingException", "   ", "The upstream provider is rate limiting requests."),
        ("ModelTimeoutException", "", "The upstream provider timed out."),
        ("ServiceUnavailableException", "", "The upstream provider is overloaded."),
        ("InternalServerException", "", "The upstream provider failed."),
        (
            "AccessDeniedException",
            "",
            "The gateway's upstream credential is not allowed to use this model.",
        ),
        ("ResourceNotFoundException", "", "The requested model was not found upstream."),
    ],
)
def test_message_wording(exception: str, message: str, expected: str) -> None:
    mapped = bedrock_error_to_anthropic(
        status=None, error_type_header=exception, exception_type=None, message=message
    )
    assert mapped.message == expected


def test_request_too_large_default_message() -> None:
    mapped = bedrock_error_to_anthropic(
        status=413, error_type_header=None, exception_type=None, message=""
    )
    assert mapped.body == error_body("request_too_large", "The request is too large.")


def test_mapped_error_is_frozen() -> None:
    mapped = bedrock_error_to_anthropic(
        status=None, error_type_header=None, exception_type=None, message="m"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        mapped.status = 200  # type: ignore[misc]
