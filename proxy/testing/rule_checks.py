"""One check for the tests of the provider fakes' validation rules: a wrong body refused, the
right one accepted. Each fake's test module then checks its own API's error shape."""

from __future__ import annotations

from typing import Any

import httpx

from proxy.testing.provider_server import ProviderFake


def refused_then_accepted(
    http: httpx.Client,
    fake: ProviderFake,
    url: str,
    *,
    wrong: Any,
    right: Any,
    reason: str,
) -> Any:
    """POST `wrong` to `url`: a 400, and the record's validation errors name `reason`; then POST
    `right`: a 200 from a valid record (so the rule refuses only what it should). The refused
    answer's JSON is returned for the caller's checks of the error format."""
    refused = http.post(url, json=wrong)
    assert refused.status_code == 400, refused.text
    problems = fake.last_request.validation_errors
    assert any(reason in problem for problem in problems), problems
    accepted = http.post(url, json=right)
    assert accepted.status_code == 200, accepted.text
    assert fake.last_request.valid
    return refused.json()
