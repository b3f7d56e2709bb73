"""Unit tests of gateway_project.envparse: typed reads that name the variable when they fail."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway_project.envparse import (
    EnvReader,
    generate_django_secret,
    generate_fernet_key,
    parse_fernet_keys,
    write_private_file,
)

GOOD_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


def reader(**variables: str) -> EnvReader:
    return EnvReader(variables)


# --- scalars --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("False", False)],
)
def test_bool_reads_common_spellings(raw: str, expected: bool) -> None:
    assert reader(FLAG=raw).bool("FLAG", None) is expected


def test_bool_rejects_other_words_naming_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^FLAG: expected a boolean.*'maybe'"):
        reader(FLAG="maybe").bool("FLAG", False)


def test_unset_or_empty_variable_gives_the_default() -> None:
    assert reader().bool("FLAG", True) is True
    assert reader(FLAG="").bool("FLAG", True) is True
    assert reader().int("COUNT", 7) == 7


def test_required_variable_missing_names_it() -> None:
    with pytest.raises(ImproperlyConfigured, match="^COUNT is not set"):
        reader().int("COUNT")


def test_int_parses_and_checks_minimum() -> None:
    assert reader(COUNT=" 12 ").int("COUNT", 1, minimum=1) == 12
    with pytest.raises(ImproperlyConfigured, match=r"^COUNT: expected an integer, got '1\.5'"):
        reader(COUNT="1.5").int("COUNT", 1)
    with pytest.raises(ImproperlyConfigured, match="^COUNT: must be at least 1, got 0"):
        reader(COUNT="0").int("COUNT", 5, minimum=1)


@pytest.mark.parametrize("raw", ["abc", "nan", "inf", "-inf", ""])
def test_float_rejects_non_numbers_and_non_finite(raw: str) -> None:
    if raw == "":
        assert reader(TIMEOUT=raw).float("TIMEOUT", 2.5) == 2.5
        return
    with pytest.raises(ImproperlyConfigured, match="^TIMEOUT: expected a number"):
        reader(TIMEOUT=raw).float("TIMEOUT", 1.0, minimum=0.1)


def test_float_checks_minimum() -> None:
    assert reader(TIMEOUT="0.5").float("TIMEOUT", 1.0, minimum=0.1) == 0.5
    with pytest.raises(ImproperlyConfigured, match="^TIMEOUT: must be at least 0.1"):
        reader(TIMEOUT="0").float("TIMEOUT", 1.0, minimum=0.1)


def test_long_bad_values_are_shortened_in_the_message() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        reader(COUNT="9" * 30 + "x" * 30).int("COUNT", 1)
    assert "..." in str(caught.value)
    assert "x" * 30 not in str(caught.value)


def test_str_is_taken_literally() -> None:
    # django-environ would read "$HOME/x" as a reference to a variable named "HOME/x".
    assert reader(PATH_VALUE="$HOME/x", HOME="/root").str("PATH_VALUE", "d") == "$HOME/x"


def test_list_splits_and_trims() -> None:
    assert reader(HOSTS=" a.example , b.example,, ").list("HOSTS", []) == ["a.example", "b.example"]
    assert reader().list("HOSTS", ["localhost"]) == ["localhost"]


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://localhost:6379/0/", "redis://localhost:6379/0"),
        ("rediss://user:pw@cache.internal:6380/2", "rediss://user:pw@cache.internal:6380/2"),
        ("filesystem://", "filesystem://"),
        ("memory://", "memory://"),
    ],
)
def test_url_accepts_known_schemes(raw: str, expected: str) -> None:
    schemes = ("redis", "rediss", "filesystem", "memory")
    assert reader(BROKER=raw).url("BROKER", None, schemes=schemes) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "localhost:6379",  # no scheme
        "http://localhost:6379/0",  # wrong scheme
        "redis://",  # nothing after the scheme
        "redis://localhost:notaport/0",
        "redis://localhost:99999/0",
    ],
)
def test_url_rejects_malformed_values_naming_the_variable(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^REDIS_URL: expected a URL \(redis/rediss\)"):
        reader(REDIS_URL=raw).url("REDIS_URL", None, schemes=("redis", "rediss"))


def test_url_strips_trailing_slash_of_http_base() -> None:
    value = reader(BASE="https://proxy.internal/anthropic/").url("BASE", None, schemes=("https",))
    assert value == "https://proxy.internal/anthropic"


def test_db_url_postgres_and_sqlite() -> None:
    config = reader(DATABASE_URL="postgres://gw:pw@db.internal:5433/gateway").db_url(
        "DATABASE_URL", "sqlite:////tmp/x.sqlite3"
    )
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.internal", 5433, "gateway")
    assert config["USER"] == "gw"
    assert config["PASSWORD"] == "pw"

    default = reader().db_url("DATABASE_URL", "sqlite:////tmp/x.sqlite3")
    assert default["ENGINE"] == "django.db.backends.sqlite3"
    assert default["NAME"] == "/tmp/x.sqlite3"


@pytest.mark.parametrize(
    "raw",
    [
        "nonsense",
        "postgres://db.internal:port/gateway",
        "postgres://",  # no database name
        "mysql://u@db.internal/gateway",  # an engine the gateway does not run on
        "foo://bar",
    ],
)
def test_db_url_rejects_bad_urls_naming_the_variable(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="^DATABASE_URL: expected a database URL"):
        reader(DATABASE_URL=raw).db_url("DATABASE_URL", "sqlite:////tmp/x.sqlite3")


# --- secrets --------------------------------------------------------------------------------


def test_secret_from_the_variable(tmp_path: Path) -> None:
    value = reader(SECRET_KEY=" s3cret \n").secret("SECRET_KEY", generate=None, data_dir=tmp_path)
    assert value == "s3cret"
    assert not (tmp_path / "secrets").exists()


def test_blank_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="^SECRET_KEY is blank"):
        reader(SECRET_KEY="   ").secret("SECRET_KEY", generate=None, data_dir=tmp_path)


def test_secret_from_file_variant(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("from-a-file\n")
    value = reader(SECRET_KEY_FILE=str(secret_file)).secret(
        "SECRET_KEY", generate=None, data_dir=tmp_path
    )
    assert value == "from-a-file"


def test_variable_wins_over_file_variant(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("from-a-file\n")
    value = reader(SECRET_KEY="direct", SECRET_KEY_FILE=str(secret_file)).secret(
        "SECRET_KEY", generate=None, data_dir=tmp_path
    )
    assert value == "direct"


def test_unreadable_or_empty_file_variant_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ImproperlyConfigured, match="^SECRET_KEY_FILE: cannot read"):
        reader(SECRET_KEY_FILE=str(missing)).secret("SECRET_KEY", generate=None, data_dir=tmp_path)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ImproperlyConfigured, match="^SECRET_KEY_FILE: .* is empty"):
        reader(SECRET_KEY_FILE=str(empty)).secret("SECRET_KEY", generate=None, data_dir=tmp_path)


def test_missing_secret_without_generation_names_it(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="^GATEWAY_KEY_HASH_SECRET is not set"):
        reader().secret("GATEWAY_KEY_HASH_SECRET", generate=None, data_dir=tmp_path)
    assert not (tmp_path / "secrets").exists()


def test_generated_secret_is_kept_private_and_stable(tmp_path: Path) -> None:
    first = reader().secret("SECRET_KEY", generate=generate_django_secret, data_dir=tmp_path)
    path = tmp_path / "secrets" / "secret_key"
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    def must_not_be_called() -> str:
        raise AssertionError("a stored secret must be reused")

    again = reader().secret("SECRET_KEY", generate=must_not_be_called, data_dir=tmp_path)
    assert again == first
    # Only the secret itself: no temporary files left beside it.
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]


def test_empty_generated_secret_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "secret_key"
    path.parent.mkdir()
    path.write_text("")
    with pytest.raises(ImproperlyConfigured, match="secret_key is empty"):
        reader().secret("SECRET_KEY", generate=generate_django_secret, data_dir=tmp_path)


def test_write_private_file_keeps_the_first_value_unless_replacing(tmp_path: Path) -> None:
    path = tmp_path / "value"
    write_private_file(path, "one", replace=False)
    write_private_file(path, "two", replace=False)
    assert path.read_text() == "one"
    write_private_file(path, "three", replace=True)
    assert path.read_text() == "three"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["value"]


def test_generated_secrets_have_the_expected_shape() -> None:
    assert len(generate_django_secret()) >= 50
    assert generate_django_secret() != generate_django_secret()
    assert len(base64.urlsafe_b64decode(generate_fernet_key())) == 32


# --- Fernet keys ----------------------------------------------------------------------------


def test_parse_fernet_keys_keeps_order() -> None:
    other = generate_fernet_key()
    assert parse_fernet_keys("KEYS", f" {GOOD_KEY} ,{other}") == [GOOD_KEY, other]


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        ("not-a-key", 1),
        (f"{GOOD_KEY},short", 2),
        (f"{GOOD_KEY},{GOOD_KEY},{base64.urlsafe_b64encode(b'x' * 31).decode()}", 3),
        (f"{GOOD_KEY},,{GOOD_KEY}", 2),
        (f"{GOOD_KEY}!", 1),
    ],
)
def test_parse_fernet_keys_names_the_bad_position(raw: str, position: int) -> None:
    with pytest.raises(ImproperlyConfigured, match=rf"^KEYS: key #{position} is not a valid"):
        parse_fernet_keys("KEYS", raw)


def test_parse_fernet_keys_refuses_empty() -> None:
    with pytest.raises(ImproperlyConfigured, match="^KEYS is empty"):
        parse_fernet_keys("KEYS", " , ")
