"""The one settings object: every knob Improve has, read from IMPROVE_* environment variables."""

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me-development-only"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMPROVE_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development", description="Where Improve runs; outside development the secret must be set."
    )
    data_dir: Path = Field(
        Path(".data"), description="Folder for the embedded database, Prefect home and mail sink."
    )
    database_url: str = Field(
        "", description="SQLAlchemy URL of the Improve database; empty means SQLite in data_dir."
    )
    secret_key: str = Field(
        DEFAULT_SECRET,
        description="Secret for signing; refused at its default outside development.",
    )
    base_url: str = Field(
        "http://127.0.0.1:8000", description="Public base URL of the web app, used in email links."
    )

    smtp_host: str = Field("127.0.0.1", description="SMTP relay host.")
    smtp_port: int = Field(1025, description="SMTP relay port (the embedded sink listens on 1025).")
    smtp_user: str = Field("", description="SMTP user name; empty means no authentication.")
    smtp_password: str = Field("", description="SMTP password.")
    smtp_tls: Literal["none", "starttls", "tls"] = Field(
        "none", description="Transport security: none, STARTTLS, or implicit TLS."
    )
    smtp_timeout_seconds: float = Field(10.0, description="Timeout for each SMTP command.")
    smtp_relay_configured: bool = Field(
        False, description="True when a real relay is configured; `improve up` then starts no sink."
    )
    mail_from: str = Field("Improve <improve@example.org>", description="From address of all mail.")

    two_level_threshold: float = Field(
        10_000.0, description="Estimated cost above which an improvement needs a second approval."
    )
    fallback_approver: str = Field(
        "operations.lead@example.org",
        description="Email of the colleague who decides when nobody's authority covers a request.",
    )
    approval_expiry_days: int = Field(14, description="Days an approval link stays valid.")
    action_link_expiry_days: int = Field(60, description="Days an action link stays valid.")
    reminder_after_hours: float = Field(48.0, description="Remind an approver after this long.")
    escalate_after_hours: float = Field(
        120.0, description="Escalate to the deputy or next authority after this long."
    )
    outbox_max_attempts: int = Field(6, description="Attempts before a 4xx-deferred email fails.")
    outbox_backoff_seconds: list[float] = Field(
        [30, 120, 600, 1800, 3600], description="Delay before each retry of a deferred email."
    )

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> "Settings":
        if self.environment != "development" and self.secret_key == DEFAULT_SECRET:
            raise ValueError(
                "IMPROVE_SECRET_KEY is still the development default; set a long random secret "
                f"before running with IMPROVE_ENVIRONMENT={self.environment}"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'improve.db').resolve()}"

    @property
    def reminder_after(self) -> timedelta:
        return timedelta(hours=self.reminder_after_hours)

    @property
    def escalate_after(self) -> timedelta:
        return timedelta(hours=self.escalate_after_hours)


settings = Settings()
