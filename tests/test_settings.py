"""Settings refuse what would be unsafe in production and derive what they can."""

import pytest
from pydantic import ValidationError

from improve.settings import DEFAULT_SECRET, Settings


def test_the_default_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="IMPROVE_SECRET_KEY"):
        Settings(environment="production", secret_key=DEFAULT_SECRET)


def test_the_default_secret_is_accepted_in_development() -> None:
    assert Settings(environment="development", secret_key=DEFAULT_SECRET).secret_key


def test_the_database_defaults_to_sqlite_in_the_data_dir(tmp_path) -> None:
    settings = Settings(database_url="", data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'improve.db'}"
