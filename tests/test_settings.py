"""Settings refuse what would be unsafe in production and derive what they can."""

import pytest
from pydantic import ValidationError

from improve.settings import DEFAULT_SECRET, Settings

STRONG = "s" * 32


@pytest.mark.parametrize("environment", ["development", "test", "production"])
def test_the_old_published_secret_is_refused_everywhere(environment: str) -> None:
    with pytest.raises(ValidationError, match="IMPROVE_SECRET_KEY"):
        Settings(environment=environment, secret_key=DEFAULT_SECRET)


def test_without_a_secret_development_makes_its_own_and_keeps_it(tmp_path) -> None:
    first = Settings(environment="development", secret_key="", data_dir=tmp_path)
    again = Settings(environment="development", secret_key="", data_dir=tmp_path)
    elsewhere = Settings(environment="development", secret_key="", data_dir=tmp_path / "other")
    secret = first.secret_key.get_secret_value()
    assert len(secret) >= 48
    assert again.secret_key.get_secret_value() == secret
    assert elsewhere.secret_key.get_secret_value() != secret
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_outside_development_the_secret_must_be_set() -> None:
    with pytest.raises(ValidationError, match="IMPROVE_SECRET_KEY must be set"):
        Settings(environment="test", secret_key="")


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"secret_key": "s"}, "at least 32 bytes"),
        ({"secret_key": "s" * 31}, "at least 32 bytes"),
        ({"base_url": "http://improve.example.org"}, "https://"),
    ],
)
def test_production_refuses_weak_settings(changes: dict[str, str], complaint: str) -> None:
    values = {"environment": "production", "secret_key": STRONG, "base_url": "https://x.org"}
    with pytest.raises(ValidationError, match=complaint):
        Settings(**{**values, **changes})


def test_production_starts_with_strong_settings() -> None:
    settings = Settings(environment="production", secret_key=STRONG, base_url="https://x.org")
    assert settings.production


def test_secrets_never_show_in_repr_or_logs() -> None:
    settings = Settings(secret_key="k" * 40, smtp_password="hunter2-password")
    for shown in (repr(settings), str(settings), str(settings.model_dump())):
        assert "k" * 40 not in shown
        assert "hunter2-password" not in shown


def test_the_database_defaults_to_sqlite_in_the_data_dir(tmp_path) -> None:
    settings = Settings(database_url="", data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'improve.db'}"
