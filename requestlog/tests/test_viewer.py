"""The log viewer (admin list with filters, detail, export) and the log API: filters, cursor
pages, detail with bodies, authentication; planted secrets never in the admin's HTML."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from accounts.models import User
from requestlog.models import RequestLog
from requestlog.tests.factories import logged_request
from requestlog.tests.secrets import background_holds, planted_bodies, secret_pieces, secrets
from usage.models import UsageEvent

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/requestlog/requestlog/"
TOOL_STREAM = b"".join(
    f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
    for name, data in [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"q": "ra'}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": 'in"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    ]
)  # fmt: skip


@pytest.fixture
def staff() -> Client:
    user = User.objects.create_superuser(email="admin@example.com", password="pw-0123456789")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def logs() -> list[RequestLog]:
    now = timezone.now()
    return [
        logged_request(
            level="metadata", request_id="gwreq_old", occurred_at=now - timedelta(days=3),
            status_code=200, latency_ms=500, user_id=1,
        ),
        logged_request(
            request_id="gwreq_fallback", provider="bedrock", fallback_reason="anthropic_529",
            streamed=True, latency_ms=15_000, status_code=200, user_id=2,
            body={"model": "m", "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}]},
            answer=TOOL_STREAM,
            surface="messages",
        ),
        logged_request(
            level="metadata", request_id="gwreq_error", status_code=429, latency_ms=80,
            user_id=1,
        ),
    ]  # fmt: skip


def _ids(response: Any) -> list[str]:
    return [log.request_id for log in response.context["cl"].result_list]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["gwreq_error", "gwreq_fallback", "gwreq_old"]),
        ("since=24h", ["gwreq_error", "gwreq_fallback"]),
        ("user=1", ["gwreq_error", "gwreq_old"]),
        ("provider=bedrock", ["gwreq_fallback"]),
        ("status=error", ["gwreq_error"]),
        ("status=429", ["gwreq_error"]),
        ("fallback=yes", ["gwreq_fallback"]),
        ("fallback=no", ["gwreq_error", "gwreq_old"]),
        ("streamed=yes", ["gwreq_fallback"]),
        ("latency=lt1", ["gwreq_error", "gwreq_old"]),
        ("latency=10-60", ["gwreq_fallback"]),
        ("q=gwreq_old", ["gwreq_old"]),
        ("q=gwreq", []),
    ],
)
def test_admin_list_filters(
    staff: Client, logs: list[RequestLog], query: str, expected: list[str]
) -> None:
    response = staff.get(f"{LIST_URL}?{query}")
    assert response.status_code == 200
    assert _ids(response) == expected


def test_admin_list_counts_no_more_than_its_cap(
    staff: Client, logs: list[RequestLog], django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(20):
        response = staff.get(LIST_URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Export CSV" in html and "format=jsonl" in html


def test_admin_detail_shows_attempts_bodies_and_tools(
    staff: Client, logs: list[RequestLog]
) -> None:
    log = logs[1]
    response = staff.get(reverse("admin:requestlog_requestlog_change", args=[log.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "anthropic_529" in html and "bedrock" in html
    assert "toolu_1" in html and "sunny" in html and "lookup" in html
    assert "&quot;q&quot;: &quot;rain&quot;" in html  # pretty-printed and escaped
    metadata_only = staff.get(reverse("admin:requestlog_requestlog_change", args=[logs[0].pk]))
    assert "No bodies" in metadata_only.content.decode()


def test_admin_has_no_add_or_change(staff: Client, logs: list[RequestLog]) -> None:
    assert staff.get(LIST_URL + "add/").status_code == 403
    response = staff.post(
        reverse("admin:requestlog_requestlog_change", args=[logs[0].pk]), {"level": "full"}
    )
    assert response.status_code == 403


def test_by_request_redirects_to_the_detail(staff: Client, logs: list[RequestLog]) -> None:
    url = reverse("admin:requestlog_requestlog_by_request", args=["gwreq_old"])
    response = staff.get(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:requestlog_requestlog_change", args=[logs[0].pk])
    missing = staff.get(reverse("admin:requestlog_requestlog_by_request", args=["gwreq_nope"]))
    assert missing.status_code == 302 and "q=gwreq_nope" in missing["Location"]


def test_export_csv_and_jsonl_of_the_filtered_list(staff: Client, logs: list[RequestLog]) -> None:
    url = reverse("admin:requestlog_requestlog_export")
    response = staff.get(url, {"user": "1", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["request_id"] for row in rows] == ["gwreq_error", "gwreq_old"]
    assert rows[0]["status_code"] == "429"
    lines = b"".join(staff.get(url, {"format": "jsonl"}).streaming_content).decode().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [
        "gwreq_error", "gwreq_fallback", "gwreq_old",
    ]  # fmt: skip
    assert staff.get(url, {"format": "xml"}).status_code == 400


def test_export_neutralises_spreadsheet_formulas(staff: Client) -> None:
    logged_request(level="metadata", request_id="gwreq_f", requested_model="=HYPERLINK(1)")
    response = staff.get(reverse("admin:requestlog_requestlog_export"), {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["requested_model"] == "'=HYPERLINK(1)"


def test_admin_pages_need_staff(logs: list[RequestLog]) -> None:
    User.objects.create_user(email="dev@example.com", password="pw-0123456789")
    client = Client()
    assert client.get(LIST_URL).status_code == 302
    client.login(email="dev@example.com", password="pw-0123456789")
    assert client.get(LIST_URL).status_code == 302


# --- API --------------------------------------------------------------------------------------


def test_api_lists_with_filters_and_cursor_pages(staff: Client, logs: list[RequestLog]) -> None:
    first = staff.get("/api/admin/logs", {"limit": 2}).json()
    assert [item["request_id"] for item in first["items"]] == ["gwreq_error", "gwreq_fallback"]
    assert first["next_cursor"]
    second = staff.get("/api/admin/logs", {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [item["request_id"] for item in second["items"]] == ["gwreq_old"]
    assert second["next_cursor"] is None
    since = (timezone.now() - timedelta(days=1)).replace(tzinfo=None).isoformat()
    recent = staff.get("/api/admin/logs", {"from": since}).json()
    assert [item["request_id"] for item in recent["items"]] == ["gwreq_error", "gwreq_fallback"]
    only = staff.get("/api/admin/logs", {"fallback": "true", "min_latency_ms": 1000}).json()
    assert [item["request_id"] for item in only["items"]] == ["gwreq_fallback"]
    assert only["items"][0]["attempts"][0]["outcome"] == "answered"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"cursor": "!!"}, "cursor"),
        ({"status": "teapot"}, "status"),
        ({"limit": 0}, "limit"),
        ({"from": "0.5"}, "from"),
        ({"to": "yesterday"}, "to"),
    ],
)
def test_api_bad_parameters_are_400(
    staff: Client, logs: list[RequestLog], params: dict[str, Any], param: str
) -> None:
    response = staff.get("/api/admin/logs", params)
    assert response.status_code == 400
    assert param in response.json()["param"]


def test_api_detail_has_the_bodies(staff: Client, logs: list[RequestLog]) -> None:
    detail = staff.get("/api/admin/logs/gwreq_fallback").json()
    assert detail["provider"] == "bedrock" and detail["fallback_reason"] == "anthropic_529"
    assert detail["bodies"]["response"]["content"][0]["name"] == "lookup"
    assert [tool["kind"] for tool in detail["bodies"]["tools"]] == ["result", "call"]
    assert staff.get("/api/admin/logs/gwreq_old").json()["bodies"] is None
    assert staff.get("/api/admin/logs/gwreq_nope").status_code == 404


def test_api_authentication(logs: list[RequestLog], settings: Any) -> None:
    settings.GATEWAY_ADMIN_API_TOKEN = "admin-token-0123456789"
    anonymous = Client()
    assert anonymous.get("/api/admin/logs").status_code == 401
    token = anonymous.get(
        "/api/admin/logs", headers={"authorization": "Bearer admin-token-0123456789"}
    )
    assert token.status_code == 200 and len(token.json()["items"]) == 3
    wrong = anonymous.get("/api/admin/logs", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    user = User.objects.create_user(email="s@example.com", password="x", is_staff=True)
    staff_without_permission = Client()
    staff_without_permission.force_login(user)
    assert staff_without_permission.get("/api/admin/logs").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_requestlog"))
    allowed = Client()
    allowed.force_login(User.objects.get(pk=user.pk))
    assert allowed.get("/api/admin/logs/gwreq_old").status_code == 200


def test_cost_filter(staff: Client) -> None:
    log = logged_request(level="metadata", request_id="gwreq_cost")
    UsageEvent.objects.filter(pk=log.event.pk).update(cost_usd=Decimal("0.5"))
    logged_request(level="metadata", request_id="gwreq_free")
    assert _ids(staff.get(LIST_URL + "?cost=0.1-1")) == ["gwreq_cost"]
    api = staff.get("/api/admin/logs", {"min_cost": "0.2"}).json()
    assert [item["request_id"] for item in api["items"]] == ["gwreq_cost"]


# --- secrets in the HTML ----------------------------------------------------------------------


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    planted=planted_bodies(),
    header_secret=secrets(),
    answer_secret=secrets(),
    streamed=st.booleans(),
)
def test_no_planted_secret_reaches_the_admin_html_or_api(
    staff: Client,
    planted: tuple[Any, list[str], Any],
    header_secret: str,
    answer_secret: str,
    streamed: bool,
) -> None:
    body, planted_secrets, background = planted
    assume(not any(background_holds(background, secret) for secret in planted_secrets))
    RequestLog.objects.all().delete()
    answer = (
        b"event: message_start\ndata: "
        + json.dumps({"type": "message_start", "message": {"content": [], "usage": {},
                      "model": "m", "id": f"msg {answer_secret}"}}).encode()
        + b"\n\n"
        if streamed
        else {"content": [{"type": "text", "text": f"see {answer_secret}"}]}
    )  # fmt: skip
    log = logged_request(
        body=body, answer=answer, streamed=streamed,
        headers={"x-api-key": header_secret, "user-agent": f"x {header_secret}"},
    )  # fmt: skip
    pages = [
        staff.get(LIST_URL).content.decode(),
        staff.get(reverse("admin:requestlog_requestlog_change", args=[log.pk])).content.decode(),
        staff.get(f"/api/admin/logs/{log.request_id}").content.decode(),
    ]
    assert "[REDACTED]" in pages[1]
    for secret in [*planted_secrets, header_secret, answer_secret]:
        for piece in secret_pieces(secret):
            for page in pages:
                assert piece not in page
                # JSON and HTML escape some characters; the escaped forms must be absent too.
                assert json.dumps(piece)[1:-1] not in page


def test_the_admin_count_falls_back_to_an_estimate_on_postgresql(
    logs: list[RequestLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection

    from requestlog import admin as log_admin

    if connection.vendor != "postgresql":
        pytest.skip("statement timeouts and plan estimates are PostgreSQL's")
    paginator = log_admin.CappedCountPaginator(RequestLog.objects.order_by("-id"), 100)
    assert paginator.count == 3
    # A count that runs out of time gives the planner's estimate instead of an error.
    slow = log_admin.CappedCountPaginator(
        RequestLog.objects.extra(where=["pg_sleep(0.05) IS NOT NULL"]).order_by("-id"), 100
    )
    monkeypatch.setattr(log_admin, "COUNT_TIMEOUT_MS", 10)
    assert slow.count >= 1
