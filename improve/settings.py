"""The one settings object: every knob Improve has, read from IMPROVE_* environment variables."""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Once the default of this project, now refused everywhere: it is public, so it signs nothing.
DEFAULT_SECRET = "change-me-development-only"
MIN_SECRET_BYTES = 32


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
    secret_key: SecretStr = Field(
        SecretStr(""),
        description=(
            "Secret for signing cookies and links, at least 32 bytes in production; empty in "
            "development means a random one kept in data_dir/secret_key."
        ),
    )
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public base URL of the web app, used in email links; https in production.",
    )
    session_hours: float = Field(12.0, description="A sign-in lasts this long, then ends.")
    sign_in_link_minutes: int = Field(15, description="Minutes an emailed sign-in link works.")
    oidc_issuer: str = Field(
        "", description="OpenID Connect issuer URL; set it to offer sign-in with that provider."
    )
    oidc_client_id: str = Field("", description="The client id Improve has at the provider.")
    oidc_client_secret: SecretStr = Field(SecretStr(""), description="Its client secret.")
    oidc_name: str = Field("your organisation's account", description="Shown on the sign-in page.")
    sign_in_requests_per_address: int = Field(
        5, description="Sign-in links one address may ask for in 15 minutes."
    )
    sign_in_requests_per_client: int = Field(
        20, description="Sign-in links one client (IP address) may ask for in 15 minutes."
    )
    token_guesses_per_client: int = Field(
        30,
        description="Refused tokens (links, API tokens, sessions) one client may offer a minute.",
    )

    smtp_host: str = Field("127.0.0.1", description="SMTP relay host.")
    smtp_port: int = Field(1025, description="SMTP relay port (the embedded sink listens on 1025).")
    smtp_user: str = Field("", description="SMTP user name; empty means no authentication.")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password.")
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
    action_link_expiry_days: int = Field(
        60, description="Days after its due date (or its sending) an action link stays valid."
    )
    reminder_after_hours: float = Field(48.0, description="Remind an approver after this long.")
    escalate_after_hours: float = Field(
        120.0, description="Escalate to the deputy or next authority after this long."
    )
    timezone: str = Field(
        "Europe/London", description="The organisation's time zone: customers' contact windows."
    )
    case_update_days: int = Field(
        7, description="Days from one customer update to the next, unless the owner sets a date."
    )
    overdue_escalate_hours: float = Field(
        24.0, description="An overdue customer update that sits this long goes to the manager."
    )
    choice_link_expiry_days: int = Field(
        21, description="Days a customer's link to choose an alternative stays valid."
    )
    help_link_expiry_days: int = Field(7, description="Days a colleague's help link stays valid.")
    # The public suggestion form (tasks/suggestions.py, web/suggest.py).
    suggestion_min_seconds: float = Field(
        3.0,
        ge=0,
        description="A suggestion form sent sooner than this after it was shown is a bot's: "
        "dropped without a word.",
    )
    suggestions_per_hour: int = Field(
        5,
        ge=1,
        description="Most suggestions from one client address, and to one email address, an hour.",
    )
    suggestion_link_expiry_days: int = Field(
        7, ge=1, description="Days the link that confirms a suggestion's email address works."
    )
    invitation_link_expiry_days: int = Field(
        30, description="Days a customer's or partner's link to answer an invitation stays valid."
    )
    outbox_max_attempts: int = Field(6, description="Attempts before a 4xx-deferred email fails.")
    outbox_backoff_seconds: list[float] = Field(
        [30, 120, 600, 1800, 3600], description="Delay before each retry of a deferred email."
    )
    smtp_pool_size: int = Field(
        4,
        ge=1,
        le=32,
        description="SMTP connections the outbox sends over at once (a big batch uses them all; "
        "a handful of emails, one). Keep within what the relay allows one client.",
    )
    outbox_batch_limit: int = Field(
        5_000,
        ge=1,
        description="Most emails one flow run sends; the next run or the sweep (every five "
        "minutes) sends the rest, so a notice to thousands holds no run for long.",
    )

    # The service review (tasks/detection.py): what it reads and when a finding is worth raising.
    review_days: int = Field(
        90, ge=7, le=366, description="Days of service records each review reads, up to now."
    )
    review_limit_per_rule: int = Field(
        20,
        ge=1,
        description="Most improvements one rule raises in one review, biggest first; the rest "
        "wait for the next review, so approvers are not flooded.",
    )
    review_paper_purpose: str = Field(
        "improvement_updates",
        description="The consent purpose (models.people.Purpose) that counts as a customer "
        "agreeing to hear from us by email, so their letters could be emails.",
    )
    review_paper_min_customers: int = Field(
        5, ge=1, description="Customers on paper who could have email, per process, to raise it."
    )
    review_repeat_days: int = Field(
        30, ge=1, description="A site visit this many days or fewer after the customer's last."
    )
    review_repeat_visits: int = Field(
        1, ge=1, description="Repeat visits to one customer in the window that raise a finding."
    )
    review_open_from_hour: int = Field(
        8, ge=0, le=23, description="Opening hours start (local hour, IMPROVE_TIMEZONE)."
    )
    review_open_until_hour: int = Field(
        18, ge=1, le=24, description="Opening hours end (local hour, IMPROVE_TIMEZONE)."
    )
    review_open_weekdays: list[int] = Field(
        [0, 1, 2, 3, 4], description="Days the sites are open, Monday 0 to Sunday 6."
    )
    review_out_of_hours_percent: float = Field(
        40.0,
        ge=0,
        le=100,
        description="A site using more than this share of its electricity outside opening hours "
        "is raised; the forecast brings it down to this share.",
    )
    review_route_miles_week: float = Field(
        400.0, ge=0, description="A route driven more than this many miles a week is raised."
    )
    review_route_saving_percent: float = Field(
        15.0,
        ge=0,
        le=100,
        description="Share of a high-mileage route's miles route planning is forecast to save.",
    )
    review_packaging_kg_year: float = Field(
        50.0, ge=0, description="Single-use packaging a process uses a year (kg) to raise it."
    )
    review_partner_days_week: float = Field(
        3.0,
        ge=0,
        description="A partner delivering to one site on at least this many days a week is raised.",
    )
    review_partner_target_days_week: float = Field(
        1.0, ge=0, description="Delivery days a week the consolidation forecast assumes."
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # Refused at start, not first met by the sender holding a customer's email.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"IMPROVE_TIMEZONE {value!r} is not a time zone; use a name like Europe/London"
            ) from None
        return value

    @model_validator(mode="after")
    def _opening_hours(self) -> "Settings":
        if self.review_open_from_hour >= self.review_open_until_hour:
            raise ValueError(
                f"IMPROVE_REVIEW_OPEN_FROM_HOUR ({self.review_open_from_hour}) must be before "
                f"IMPROVE_REVIEW_OPEN_UNTIL_HOUR ({self.review_open_until_hour})"
            )
        if not set(self.review_open_weekdays) <= set(range(7)):
            raise ValueError(
                f"IMPROVE_REVIEW_OPEN_WEEKDAYS {self.review_open_weekdays} must be days 0 "
                "(Monday) to 6 (Sunday)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_weak_settings(self) -> "Settings":
        secret = self.secret_key.get_secret_value()
        if secret == DEFAULT_SECRET:
            raise ValueError(
                "IMPROVE_SECRET_KEY is the old published default; set a long random secret, "
                "for example: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if not secret:
            if self.environment != "development":
                raise ValueError(
                    f"IMPROVE_SECRET_KEY must be set when IMPROVE_ENVIRONMENT={self.environment}"
                )
            self.secret_key = SecretStr(_local_secret(self.data_dir))
        if self.environment == "production":
            if len(self.secret_key.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"IMPROVE_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes in production"
                )
            if not self.base_url.startswith("https://"):
                raise ValueError(
                    f"IMPROVE_BASE_URL must start with https:// in production, not {self.base_url}"
                )
        return self

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def zone(self) -> ZoneInfo:
        """The organisation's time zone (`timezone`): its days, hours and contact windows."""
        return ZoneInfo(self.timezone)

    @property
    def oidc_configured(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'improve.db').resolve()}"

    @property
    def reminder_after(self) -> timedelta:
        return timedelta(hours=self.reminder_after_hours)

    @property
    def escalate_after(self) -> timedelta:
        return timedelta(hours=self.escalate_after_hours)


def _local_secret(data_dir: Path) -> str:
    """This machine's own development secret: random, made once, readable by its owner only.

    Every process of one `improve up` shares data_dir, so they all sign with the same key, and no
    two installations share one (a published default would let anyone forge a link).
    """
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: a process starting at the same moment reads
        # either no file or the whole secret, never half of one.
        draft = data_dir / f".secret_key.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


settings = Settings()
