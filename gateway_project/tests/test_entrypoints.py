"""Entry points: a bad environment value stops every one with one line naming the variable,
and the served application freezes what start-up built.

manage.py, the WSGI module, a Celery worker and the ASGI server each start in a fresh
interpreter with a crafted environment; each must exit non-zero with a single line on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway_project.envparse import (
    EnvironmentValueError,
    EnvReader,
    bad_environment_message,
    exit_on_bad_environment,
)

BASE_DIR = Path(__file__).resolve().parents[2]
EXPECTED = "Configuration error: GATEWAY_UPSTREAM_CONNECT_TIMEOUT: expected a number, got 'soon'."


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([sys.executable, "manage.py", "check"], id="manage.py check"),
        pytest.param([sys.executable, "manage.py", "run_gateway"], id="manage.py run_gateway"),
        pytest.param([sys.executable, "-c", "import gateway_project.wsgi"], id="wsgi"),
        pytest.param(
            [sys.executable, "-m", "celery", "-A", "gateway_project", "worker"], id="celery"
        ),
        pytest.param(
            [sys.executable, "-m", "uvicorn", "gateway_project.asgi:application", "--port", "1"],
            id="uvicorn",
        ),
    ],
)
def test_a_bad_value_prints_one_line_and_exits_non_zero(tmp_path: Path, argv: list[str]) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DEBUG": "true",
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_UPSTREAM_CONNECT_TIMEOUT": "soon",
    }
    result = subprocess.run(
        argv, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [EXPECTED], result.stderr
    assert "Traceback" not in result.stdout


def test_bad_environment_message_finds_the_cause() -> None:
    try:
        try:
            EnvReader({"COUNT": "many"}).int("COUNT", 1)
        except EnvironmentValueError as inner:
            raise RuntimeError("while loading the worker's configuration") from inner
    except RuntimeError as outer:
        assert bad_environment_message(outer) == (
            "Configuration error: COUNT: expected an integer, got 'many'."
        )
    assert bad_environment_message(ValueError("unrelated")) is None
    # Raised elsewhere than settings.py, a plain ImproperlyConfigured keeps its traceback.
    assert bad_environment_message(ImproperlyConfigured("app registry")) is None


def test_exit_on_bad_environment_exits_only_for_bad_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited, exit_on_bad_environment():
        EnvReader({"FLAG": "maybe"}).bool("FLAG", False)
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "Configuration error: FLAG: expected a boolean (true/false), got 'maybe'.\n"
    )
    with pytest.raises(KeyError), exit_on_bad_environment():
        raise KeyError("other errors pass through")


def _python_output(tmp_path: Path, script: str, **extra_env: str) -> list[str]:
    """The lines ``script`` prints in a fresh interpreter with a DEBUG environment."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DEBUG": "true",
        "GATEWAY_DATA_DIR": str(tmp_path),
        **extra_env,
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip().splitlines()


def test_the_served_application_freezes_what_start_up_built(tmp_path: Path) -> None:
    """The ASGI module ends start-up with ``gc.freeze()``: the collector's passes under load
    then skip the objects every request would otherwise have them walk again."""
    output = _python_output(
        tmp_path, "import gc, gateway_project.asgi; print(gc.get_freeze_count())"
    )
    assert int(output[-1]) > 50_000


def test_web_workers_leave_celery_out_and_celery_still_finds_its_app(tmp_path: Path) -> None:
    """No web request sends a task, so the served application imports no Celery (about 12 MiB
    a worker); ``celery -A gateway_project`` finds the app with its beat schedule, and a task
    module brings the app along, so a task sent from anywhere goes through its broker."""
    script = (
        "import sys, gateway_project.asgi\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in "
        "('celery', 'kombu', 'amqp')))\n"
        "import usage.tasks\n"
        "print(usage.tasks.rollup_usage.app.conf.broker_url)\n"
        "from celery.app.utils import find_app\n"
        "print(sorted(find_app('gateway_project').conf.beat_schedule))\n"
    )
    output = _python_output(tmp_path, script, CELERY_BROKER_URL="redis://127.0.0.1:6399/3")
    imported, broker, schedule = output[-3:]
    assert imported == "[]"
    assert broker == "redis://127.0.0.1:6399/3"
    assert "'usage-rollup'" in schedule
