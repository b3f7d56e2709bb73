#!/usr/bin/env bash
# Claude Code through the gateway, end to end, with fake upstreams standing in for Anthropic and
# Bedrock. One command; exits 0 when every check passes, 1 when one fails, 2 when it cannot run.
#
#   scripts/claude_code_check.sh
#
# What it does, in a temporary directory (removed on success, kept and named on failure):
#   1. starts the fake upstream (proxy/testing/fake_upstream.py) on a free port, scripted to
#      answer a known text with known usage;
#   2. starts the gateway with `manage.py run_gateway --no-worker --no-beat` on a free port, on
#      the embedded defaults (SQLite and generated secrets in the temporary data directory);
#   3. creates access keys with `manage.py create_access_key` and Bedrock credentials (one in
#      InvokeModel mode, one in Converse mode) with `manage.py set_provider_credential`;
#   4. runs `claude -p "say hello" --output-format json` as a new user would (a fresh HOME, only
#      ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY set): once while Anthropic answers, then, with
#      the fake's Anthropic side answering 529 to everything, through each Bedrock mode, with
#      Claude Code's default model (the credential's fallback model) and with a model from the
#      seeded model map;
#   5. checks Claude Code printed the fake's answer and its token counts, the fake received what
#      the gateway should send (Claude Code's headers on the Anthropic side, the Bedrock API key
#      and model on the Bedrock side), and the usage events name the right provider, model,
#      session and tokens.
#
# Environment:
#   CLAUDE_CODE_BIN   the claude executable (default: `claude` on PATH)
#   PYTHON            the project's Python (default: .venv/bin/python in the repository)
#   KEEP_WORKDIR=1    keep the temporary directory (logs, recorded requests) after success too
#
# DATABASE_URL, REDIS_URL and CELERY_BROKER_URL are ignored on purpose: the check never touches
# an existing installation's database.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
CLAUDE=${CLAUDE_CODE_BIN:-$(command -v claude || true)}

ANSWER_TEXT="Hello from the fake upstream, through the gateway."
ANSWER_INPUT_TOKENS=1234
ANSWER_OUTPUT_TOKENS=56
# Bedrock model used for requested models missing from the model map (Claude Code's default
# model usually is: new releases default to models newer than the seeded map).
FALLBACK_MODEL="global.anthropic.claude-opus-4-6-v1"
MAPPED_MODEL="claude-sonnet-4-6"
CLIENT_API_KEY="sk-ant-api03-gateway-check-not-a-real-key"

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'claude_code_check: %s\n' "$*" >&2
    exit 2
}

if [[ -z "$CLAUDE" ]]; then
    die "the claude CLI was not found; install it (npm install -g @anthropic-ai/claude-code) or set CLAUDE_CODE_BIN"
fi
[[ -x "$CLAUDE" ]] || die "CLAUDE_CODE_BIN=$CLAUDE is not executable"
[[ -x "$PY" ]] || die "no Python at $PY; create the virtualenv (./gateway test) or set PYTHON"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/claude-code-check.XXXXXX")
mkdir -p "$WORK/data" "$WORK/fake" "$WORK/runs" "$WORK/project"
FAKE_PID=""
GATEWAY_PID=""
STATUS=2

cleanup() {
    if [[ -n "$GATEWAY_PID" ]] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
        kill -TERM "$GATEWAY_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$GATEWAY_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$GATEWAY_PID" 2>/dev/null || true
        wait "$GATEWAY_PID" 2>/dev/null || true
    fi
    if [[ -n "$FAKE_PID" ]] && kill -0 "$FAKE_PID" 2>/dev/null; then
        kill -TERM "$FAKE_PID" 2>/dev/null || true
        wait "$FAKE_PID" 2>/dev/null || true
    fi
    if [[ "$STATUS" == 0 && "${KEEP_WORKDIR:-}" != 1 ]]; then
        rm -rf "$WORK"
    else
        printf 'claude_code_check: logs and recorded requests kept in %s\n' "$WORK" >&2
    fi
}
trap 'STATUS=$?; cleanup' EXIT

# The gateway and the manage.py commands share this environment; nothing from the caller's
# installation leaks in.
unset DATABASE_URL REDIS_URL CELERY_BROKER_URL
export DEBUG=true
export GATEWAY_DATA_DIR="$WORK/data"
export GATEWAY_LOG_FORMAT=plain
export DJANGO_SETTINGS_MODULE=gateway_project.settings
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

manage() { (cd "$ROOT" && "$PY" manage.py "$@"); }

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_file() { # path, seconds
    local deadline=$((SECONDS + $2))
    until [[ -s "$1" ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# --- the fake upstream ----------------------------------------------------------------------------
# A small launcher around FakeUpstream, because the fake's command line cannot script answers or
# faults: SIGUSR1 makes every Anthropic request answer 529, SIGUSR2 writes the recorded requests
# to requests.json; each writes an acknowledgement file when done.
cat >"$WORK/fake_launcher.py" <<'PYTHON'
import json
import signal
import sys
import threading
from pathlib import Path

from proxy.testing.answers import ScriptedAnswer
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.faults import HttpError

out = Path(sys.argv[1])
fake = FakeUpstream(record=True)
fake.answer = ScriptedAnswer.text(
    sys.argv[2], usage={"input_tokens": int(sys.argv[3]), "output_tokens": int(sys.argv[4])}
)


def write(name, text):
    partial = out / (name + ".partial")
    partial.write_text(text)
    partial.replace(out / name)


def dump(*_):
    rows = []
    for request in fake.requests:
        try:
            body = json.loads(request.body) if request.body else None
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        rows.append(
            {
                "upstream": request.upstream,
                "endpoint": request.endpoint,
                "model_id": request.model_id,
                "method": request.method,
                "path": request.raw_path,
                "query": request.query,
                "headers": request.headers,
                "body": body,
                "fault": repr(request.fault) if request.fault else None,
                "outcome": request.outcome,
            }
        )
    write("requests.json", json.dumps(rows, indent=1))
    write("dumped", "1")


def overload(*_):
    fake.set_default_fault("anthropic", HttpError(status=529))
    write("overloaded", "1")


stop = threading.Event()
signal.signal(signal.SIGUSR1, overload)
signal.signal(signal.SIGUSR2, dump)
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
fake.start()
write("url", fake.base_url)
while not stop.is_set():
    stop.wait(0.5)
fake.stop()
PYTHON

fake_signal() { # signal, acknowledgement file
    rm -f "$WORK/fake/$2"
    kill "-$1" "$FAKE_PID"
    wait_for_file "$WORK/fake/$2" 10 || die "the fake upstream did not answer SIG$1"
}

say "starting the fake upstream"
"$PY" "$WORK/fake_launcher.py" "$WORK/fake" "$ANSWER_TEXT" "$ANSWER_INPUT_TOKENS" \
    "$ANSWER_OUTPUT_TOKENS" >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
wait_for_file "$WORK/fake/url" 30 || {
    cat "$WORK/fake.log" >&2
    die "the fake upstream did not start"
}
FAKE_URL=$(cat "$WORK/fake/url")
export GATEWAY_ANTHROPIC_BASE_URL="$FAKE_URL"
export GATEWAY_BEDROCK_ENDPOINT_URL="$FAKE_URL"

# --- the gateway ------------------------------------------------------------------------------------
GATEWAY_PORT=$(free_port)
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
say "starting the gateway on $GATEWAY_URL (data in $WORK/data)"
# exec: the background job's PID is run_gateway's own, which stops its web server on SIGTERM.
(cd "$ROOT" && exec "$PY" manage.py run_gateway --host 127.0.0.1 --port "$GATEWAY_PORT" \
    --no-worker --no-beat) >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
deadline=$((SECONDS + 90))
healthy() {
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$GATEWAY_URL/healthz" 2>/dev/null
}
until healthy; do
    if ! kill -0 "$GATEWAY_PID" 2>/dev/null || ((SECONDS >= deadline)); then
        tail -n 40 "$WORK/gateway.log" >&2
        die "the gateway did not start"
    fi
    sleep 0.2
done

# --- keys and credentials ---------------------------------------------------------------------------
new_key() { # label -> plaintext key (the command prints it alone on its last line)
    manage create_access_key check@example.com --create-user --label "$1" | tail -n 1
}
bedrock_credential() { # key, mode: a Bedrock credential scoped to that key
    local prefix
    prefix=$(printf %s "$1" | cut -d_ -f1,2) # gw_<8 characters>, the key's public prefix
    printf %s "bedrock-api-key-check-$2" | manage set_provider_credential bedrock --secret-stdin \
        --access-key "$prefix" --region us-east-1 --mode "$2" \
        --fallback-model "$FALLBACK_MODEL" >/dev/null
}

say "creating access keys and Bedrock credentials"
KEY_DIRECT=$(new_key direct)
KEY_INVOKE=$(new_key invoke)
KEY_CONVERSE=$(new_key converse)
bedrock_credential "$KEY_INVOKE" invoke
bedrock_credential "$KEY_CONVERSE" converse

# --- checks -----------------------------------------------------------------------------------------
# verify.py checks one run: Claude Code's JSON output, the requests the fake received during the
# run, and the usage events the gateway recorded for the run's session.
cat >"$WORK/verify.py" <<'PYTHON'
import json
import sys
import time

import django

django.setup()

from proxy.models import ModelMapping  # noqa: E402
from proxy.translation.model_ids import normalize_requested_model  # noqa: E402
from usage.models import UsageEvent  # noqa: E402

work, name, since, provider, bedrock_mode = sys.argv[1:6]
answer_text, input_tokens, output_tokens, client_key, fallback_model = sys.argv[6:11]
tokens = (int(input_tokens), int(output_tokens))
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return bool(condition)


def header(request, wanted):
    return next((value for key, value in request["headers"] if key == wanted), None)


def finish():
    for failure in failures:
        print(f"FAIL {name}: {failure}")
    sys.exit(1 if failures else 0)


with open(f"{work}/runs/{name}.json") as stream:
    try:
        output = json.load(stream)
    except ValueError:
        check(False, "Claude Code printed no JSON result")
        finish()
session = output.get("session_id", "")
result = str(output.get("result", "")).strip()
check(not output.get("is_error"), f"Claude Code reported an error: {result!r}")
check(result == answer_text, f"Claude Code printed {result!r}")
usage = output.get("usage") or {}
check(
    (usage.get("input_tokens"), usage.get("output_tokens")) == tokens,
    f"Claude Code counted {usage.get('input_tokens')} in / {usage.get('output_tokens')} out",
)

with open(f"{work}/fake/requests.json") as stream:
    requests = json.load(stream)[int(since):]
check(requests, "the fake upstream received no request")
for request in requests:
    check(request["upstream"], f"the fake got a request it has no route for: {request['path']}")
anthropic = [r for r in requests if r["upstream"] == "anthropic"]
bedrock = [r for r in requests if r["upstream"] == "bedrock"]
# On the Anthropic side the gateway forwards what Claude Code sent.
for request in anthropic:
    check(header(request, "x-api-key") == client_key, "the client's x-api-key was not forwarded")
    check(header(request, "anthropic-version") == "2023-06-01", "anthropic-version missing")
    check(
        "claude-code-20250219" in (header(request, "anthropic-beta") or ""),
        "anthropic-beta was not forwarded",
    )
    check(header(request, "x-app") == "cli", "x-app was not forwarded")
    check(
        header(request, "x-claude-code-session-id") == session,
        "X-Claude-Code-Session-Id was not forwarded",
    )
if provider == "anthropic":
    check(anthropic and not bedrock, "expected requests to Anthropic only")
else:
    endpoint = "converse-stream" if bedrock_mode == "converse" else "invoke-with-response-stream"
    check(bedrock, "the gateway sent nothing to Bedrock")
    for request in bedrock:
        check(request["endpoint"] == endpoint, f"Bedrock {request['endpoint']}, not {endpoint}")
        check(
            header(request, "authorization") == f"Bearer bedrock-api-key-check-{bedrock_mode}",
            "the Bedrock API key was not sent as a bearer token",
        )
        check(header(request, "x-api-key") is None, "the client's API key was sent to Bedrock")

# The gateway records usage after the response, off the response path: wait for it.
deadline = time.monotonic() + 20
events = []
while not events and time.monotonic() < deadline:
    events = list(UsageEvent.objects.filter(session_id=session).order_by("id"))
    if not events:
        time.sleep(0.25)
check(events, f"no usage event for session {session!r}")
answered = [event for event in events if event.status_code == 200]
check(len(answered) == 1, f"{len(answered)} answered usage events for one question")
note = ""
for event in answered:
    expected_model = event.requested_model
    if provider == "bedrock":
        mapped = (
            ModelMapping.objects.filter(
                anthropic_model=normalize_requested_model(event.requested_model), enabled=True
            )
            .values_list("bedrock_model_id", flat=True)
            .first()
        )
        expected_model = mapped or fallback_model
        note = "model map" if mapped else "credential's fallback model"
        check(
            all(request["model_id"] == expected_model for request in bedrock),
            f"Bedrock was asked for {sorted({r['model_id'] for r in bedrock})}",
        )
        check(
            event.fallback_reason in ("anthropic_529", "circuit_open"),
            f"fallback reason {event.fallback_reason!r}",
        )
    else:
        check(event.fallback_reason == "", f"fallback reason {event.fallback_reason!r}")
    check(event.provider == provider, f"usage event provider {event.provider!r}")
    check(event.upstream_model == expected_model, f"usage event model {event.upstream_model!r}")
    check(
        (event.input_tokens, event.output_tokens) == tokens,
        f"usage event counted {event.input_tokens} in / {event.output_tokens} out",
    )
if not failures:
    event = answered[0]
    via = f"{event.upstream_model} from the {note}" if note else event.upstream_model
    reason = f", fallback reason {event.fallback_reason}" if event.fallback_reason else ""
    print(f"ok   {name}: {result!r} from {provider} ({event.requested_model} -> {via}{reason})")
finish()
PYTHON

FAILED=0
REQUESTS_SEEN=0

run_claude() { # name, key, expected provider, Bedrock mode or -, extra claude arguments...
    local name=$1 key=$2 provider=$3 mode=$4
    shift 4
    mkdir -p "$WORK/runs/$name-home"
    local rc=0
    # A new user: a fresh HOME, nothing from this shell's environment but what is set here.
    (cd "$WORK/project" && env -i \
        PATH="$(dirname "$CLAUDE"):/usr/local/bin:/usr/bin:/bin" \
        HOME="$WORK/runs/$name-home" \
        TERM=dumb \
        ANTHROPIC_BASE_URL="$GATEWAY_URL/ak/$key" \
        ANTHROPIC_API_KEY="$CLIENT_API_KEY" \
        DISABLE_TELEMETRY=1 \
        DISABLE_ERROR_REPORTING=1 \
        DISABLE_AUTOUPDATER=1 \
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
        timeout 300 "$CLAUDE" -p "say hello" --output-format json "$@" \
        </dev/null >"$WORK/runs/$name.json" 2>"$WORK/runs/$name.err") || rc=$?
    fake_signal USR2 dumped
    if ! "$PY" "$WORK/verify.py" "$WORK" "$name" "$REQUESTS_SEEN" "$provider" "$mode" \
        "$ANSWER_TEXT" "$ANSWER_INPUT_TOKENS" "$ANSWER_OUTPUT_TOKENS" "$CLIENT_API_KEY" \
        "$FALLBACK_MODEL"; then
        printf '     claude exited %s; its stderr:\n' "$rc"
        sed 's/^/     | /' "$WORK/runs/$name.err"
        FAILED=1
    fi
    REQUESTS_SEEN=$("$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' \
        "$WORK/fake/requests.json")
}

say "Claude Code $("$CLAUDE" --version 2>/dev/null | head -n 1) at $CLAUDE"
say "Anthropic answers"
run_claude anthropic "$KEY_DIRECT" anthropic -
say "Anthropic answers 529 to everything: the gateway falls back to Bedrock"
fake_signal USR1 overloaded
run_claude bedrock-invoke "$KEY_INVOKE" bedrock invoke
run_claude bedrock-converse "$KEY_CONVERSE" bedrock converse
run_claude bedrock-invoke-mapped "$KEY_INVOKE" bedrock invoke --model "$MAPPED_MODEL"
run_claude bedrock-converse-mapped "$KEY_CONVERSE" bedrock converse --model "$MAPPED_MODEL"

if ((FAILED)); then
    say "gateway log (last 30 lines):"
    tail -n 30 "$WORK/gateway.log" | sed 's/^/     | /'
    printf 'claude_code_check: FAILED\n' >&2
    exit 1
fi
say "all checks passed"
