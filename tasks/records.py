"""Service records in and out: the import (CSV and API alike), the filtered list, the processes.

One row is validated as a RecordIn wherever it comes from; a bad row becomes a RowError naming
its line and field, and the rest go in. Rows are inserted in batches with ON CONFLICT DO NOTHING
on `key`, so importing the same rows twice stores nothing the second time.
"""

import csv
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, func, select

from improve.errors import ImproveError, InvalidInput
from improve.settings import settings
from models import Customer, Partner, RecordKind, ServiceProcess, ServiceRecord
from models.db import MAX_AMOUNT, utcnow
from models.improvement import NO_NUL_PATTERN

COLUMNS = (
    "key",
    "process",
    "kind",
    "occurred_at",
    "quantity",
    "customer_email",
    "partner_email",
    "site",
    "route",
    "detail",
)
# The tables themselves: batches go in as plain INSERTs, not one ORM object a row.
PROCESS_TABLE = ServiceProcess.__table__  # type: ignore[attr-defined]
RECORD_TABLE = ServiceRecord.__table__  # type: ignore[attr-defined]
REQUIRED_COLUMNS = ("process", "kind", "occurred_at", "quantity")
KINDS = ", ".join(RecordKind)
WHEN_EXAMPLE = "2026-10-01T09:30:00"


def _refuse(message: str) -> PydanticCustomError:
    # A custom error's message is shown as it is, without pydantic's "Value error, " prefix.
    return PydanticCustomError("record", message)


class RecordIn(BaseModel):
    """One service record as it arrives, from a CSV row or a JSON object."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: str | None = Field(
        None,
        max_length=120,
        pattern=NO_NUL_PATTERN,
        description="The source system's own id; if absent, a hash of the row.",
    )
    process: str = Field(
        min_length=1,
        max_length=80,
        pattern=NO_NUL_PATTERN,
        description="A new name creates the process.",
    )
    kind: RecordKind
    occurred_at: datetime = Field(
        description="ISO 8601; without a zone it is read in the organisation's time zone."
    )
    quantity: float = Field(description="0 or more, in the unit of the kind (RECORD_UNITS).")
    customer_email: str | None = Field(None, max_length=254, pattern=NO_NUL_PATTERN)
    partner_email: str | None = Field(None, max_length=254, pattern=NO_NUL_PATTERN)
    site: str = Field("", max_length=120, pattern=NO_NUL_PATTERN)
    route: str = Field("", max_length=120, pattern=NO_NUL_PATTERN)
    detail: str = Field("", max_length=200, pattern=NO_NUL_PATTERN)

    @field_validator("key", "customer_email", "partner_email", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("site", "route", "detail", mode="before")
    @classmethod
    def _absent_is_blank(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: object) -> object:
        if isinstance(value, str) and value.strip() in RecordKind.__members__:
            return value.strip()
        raise _refuse(f"must be one of {KINDS}")

    @field_validator("quantity", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> float:
        # JSON's true is no number, though pydantic would read it as 1.
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _refuse("must be a number")
        try:
            number = float(value)
        except ValueError:
            raise _refuse("must be a number") from None
        except OverflowError:  # an integer beyond any float
            raise _refuse(f"must be at most {MAX_AMOUNT:.0e}") from None
        if not math.isfinite(number):
            raise _refuse("must be a finite number")
        if number < 0:
            raise _refuse("must be 0 or more")
        if number > MAX_AMOUNT:
            raise _refuse(f"must be at most {MAX_AMOUNT:.0e}")
        return number

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _a_moment(cls, value: object) -> datetime:
        """ISO text (a date alone is the start of that day) or a datetime; stored in UTC."""
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise _refuse(f"must be a date and time like {WHEN_EXAMPLE}") from None
        if not isinstance(value, datetime):
            raise _refuse(f"must be a date and time like {WHEN_EXAMPLE}")
        try:
            return as_utc(value)
        except OverflowError:
            raise _refuse("must be a date and time between the years 1 and 9999") from None


class RecordFileError(ImproveError):
    """A records file that cannot be read at all: missing, not CSV, or with unknown columns."""


@dataclass(frozen=True)
class RowError:
    line: int  # the file's line, or the index in an API request's list
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.field}: {self.message}"


@dataclass
class ImportSummary:
    taken: int = 0  # new records stored
    already: int = 0  # rows whose key was already stored (a second import)
    refused: list[RowError] = field(default_factory=list)
    processes_created: list[str] = field(default_factory=list)


def as_utc(moment: datetime) -> datetime:
    """A naive time is the organisation's local time; any time comes back in UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=settings.zone)
    return moment.astimezone(UTC)


def _message(error: Any) -> str:
    """pydantic's words, said the way the rest of Improve says them."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"is not a field of a record; the fields are {', '.join(COLUMNS)}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "must not be blank"
    if kind == "string_pattern_mismatch":  # NO_NUL_PATTERN: PostgreSQL stores no NUL in text
        return "must not contain a NUL character"
    if kind == "string_type":
        return "must be text"
    return str(error["msg"])


def _row_key(record: RecordIn) -> str:
    """The same row's fields give the same key, so a file without keys imports once."""
    fields = (
        record.process,
        record.kind.value,
        record.occurred_at.isoformat(),
        repr(record.quantity),
        (record.customer_email or "").lower(),
        (record.partner_email or "").lower(),
        record.site,
        record.route,
        record.detail,
    )
    return "sha256:" + hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def _insert(session: Session, table: Any) -> Any:
    """An INSERT that skips rows whose unique key is already stored, in this database's words."""
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)


class _Lookups:
    """Processes, customers and partners by name or email, read once per import."""

    def __init__(self, session: Session) -> None:
        self.session = session
        rows = session.exec(select(ServiceProcess.id, ServiceProcess.name))
        self.processes = {name: pid for pid, name in rows if pid is not None}
        self._customers: dict[str, int] | None = None
        self._partners: dict[str, int] | None = None

    def customer(self, email: str) -> int | None:
        if self._customers is None:
            self._customers = self._emails(Customer)
        return self._customers.get(email.lower())

    def partner(self, email: str) -> int | None:
        if self._partners is None:
            self._partners = self._emails(Partner)
        return self._partners.get(email.lower())

    def _emails(self, table: type[Customer] | type[Partner]) -> dict[str, int]:
        rows = self.session.exec(select(table.id, func.lower(table.email)))
        return {email: row_id for row_id, email in rows if row_id is not None}

    def process(self, name: str, summary: ImportSummary) -> int:
        if name not in self.processes:
            # ON CONFLICT: another import may make the same process at the same moment.
            statement = _insert(self.session, PROCESS_TABLE).on_conflict_do_nothing(
                index_elements=["name"]
            )
            made = self.session.execute(
                statement.returning(PROCESS_TABLE.c.id),
                {"name": name, "description": "", "created_at": utcnow()},
            )
            if made.first() is not None:
                summary.processes_created.append(name)
            self.processes[name] = self.session.exec(
                select(ServiceProcess.id).where(ServiceProcess.name == name)
            ).one()  # type: ignore[assignment]
        return self.processes[name]


def _row(
    raw: Mapping[str, Any], line: int, lookups: _Lookups, summary: ImportSummary
) -> dict[str, Any] | None:
    """The row as the values of a service_record, or None with its errors added to summary."""
    try:
        record = RecordIn.model_validate(raw)
    except ValidationError as exc:
        seen: set[str] = set()
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "row"
            if name not in seen:
                seen.add(name)
                summary.refused.append(RowError(line, name, _message(error)))
        return None
    customer_id = partner_id = None
    if record.customer_email is not None:
        customer_id = lookups.customer(record.customer_email)
        if customer_id is None:
            summary.refused.append(
                RowError(
                    line, "customer_email", f"no customer has the email {record.customer_email}"
                )
            )
            return None
    if record.partner_email is not None:
        partner_id = lookups.partner(record.partner_email)
        if partner_id is None:
            summary.refused.append(
                RowError(line, "partner_email", f"no partner has the email {record.partner_email}")
            )
            return None
    return {
        "key": record.key or _row_key(record),
        "process_id": lookups.process(record.process, summary),
        "kind": record.kind.value,
        "occurred_at": record.occurred_at,
        "quantity": record.quantity,
        "customer_id": customer_id,
        "partner_id": partner_id,
        "site": record.site,
        "route": record.route,
        "detail": record.detail,
    }


def _store(session: Session, batch: list[dict[str, Any]], summary: ImportSummary) -> None:
    """Insert one batch, count what was new, and commit it."""
    unique: dict[str, dict[str, Any]] = {}
    for values in batch:
        unique.setdefault(values["key"], values)
    summary.already += len(batch) - len(unique)  # the same key twice in one batch
    if unique:
        now = utcnow()
        rows = [{**values, "imported_at": now} for values in unique.values()]
        # RETURNING counts what went in: an executemany's rowcount is -1 on psycopg.
        statement = (
            _insert(session, RECORD_TABLE)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(RECORD_TABLE.c.id)
        )
        stored = len(session.execute(statement, rows).all())
        summary.taken += stored
        summary.already += len(rows) - stored
    session.commit()


def import_records(
    *,
    session: Session,
    rows: Iterable[Mapping[str, Any]],
    first_line: int = 2,
    batch_size: int = 5000,
    on_batch: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Validate each row and store the good ones; a bad row is refused naming its line and field.

    Unlike the other domain functions this one commits, once per batch: a million rows must not
    be one transaction, and a failure part way keeps the batches already stored (importing the
    file again then adds only the rest). `first_line` is the line of the first row (2 for a CSV
    file under its header; 0 for the index in an API request). `on_batch(rows_done)` is called
    after each batch, for progress.
    """
    summary = ImportSummary()
    lookups = _Lookups(session)
    batch: list[dict[str, Any]] = []
    done = 0
    for done, raw in enumerate(rows, start=1):
        values = _row(raw, first_line + done - 1, lookups, summary)
        if values is not None:
            batch.append(values)
        if done % batch_size == 0:
            _store(session, batch, summary)
            batch = []
            if on_batch:
                on_batch(done)
    if batch or done % batch_size:
        _store(session, batch, summary)
        if on_batch:
            on_batch(done)
    return summary


def read_csv(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a records CSV file, checking its header first (a UTF-8 BOM is fine).

    Raises RecordFileError before any row when the file cannot be opened or its header names a
    column Improve does not know or lacks one it needs.
    """
    try:
        file = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise RecordFileError(f"cannot read {path}: {exc.strerror}") from None
    with file:
        try:
            reader = csv.DictReader(file)
            header = [name.strip() for name in reader.fieldnames or []]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise RecordFileError(f"{path} is not a UTF-8 CSV file: {exc}") from None
        if not header:
            raise RecordFileError(f"{path} is empty: its first line must name the columns")
        unknown = [name for name in header if name not in COLUMNS]
        if unknown:
            raise RecordFileError(
                f"{path}: unknown column{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(repr(n) for n in unknown)}; the columns are {', '.join(COLUMNS)}"
            )
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise RecordFileError(f"{path}: the header lacks {', '.join(missing)}")
        reader.fieldnames = header
        try:
            for row in reader:
                # Extra cells beyond the header land under None: say so as a field of the row.
                extra = row.pop(None, None)  # type: ignore[call-overload]
                if extra:
                    row["(extra cells)"] = ",".join(extra)
                yield row
        except (UnicodeDecodeError, csv.Error) as exc:
            raise RecordFileError(
                f"{path}, line {reader.line_num}: cannot be read as UTF-8 CSV: {exc}"
            ) from None


# --- reading records back ------------------------------------------------------------------------


# How `since` and `until` are read, by the page and the API alike: a day ("2026-10-01") or a
# moment ("2026-10-01T09:30", in the organisation's time zone unless it says otherwise).
DAY_OR_TIME = "must be a day like 2026-10-01 or a time like 2026-10-01T09:30"


def _day_or_time(value: object) -> object:
    """ISO text only: pydantic alone would read "0.5" as a Unix time, or midnight as a day."""
    if isinstance(value, date):
        return value
    text = value.strip().upper() if isinstance(value, str) else ""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ].+", text):
            return datetime.fromisoformat(text)
    except ValueError:
        pass
    raise _refuse(DAY_OR_TIME)


When = Annotated[date | datetime, BeforeValidator(_day_or_time)]
WHEN: TypeAdapter[date | datetime] = TypeAdapter(When)
EARLIEST, LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def parse_when(text: str, name: str) -> date | datetime | None:
    """A `since` or `until` from a query string; blank is none, anything else not a time is a
    422 naming the field."""
    if not text.strip():
        return None
    try:
        return WHEN.validate_python(text.strip())
    except ValidationError:
        raise InvalidInput({name: DAY_OR_TIME}) from None


def _start(moment: date | datetime) -> datetime:
    """The moment in UTC (a day: its first moment); at the ends of the calendar, the end."""
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time())
    try:
        return as_utc(moment)
    except OverflowError:
        return EARLIEST if moment.year < 2 else LATEST


def _conditions(
    *,
    kind: RecordKind | str | None,
    process: str | None,
    customer_id: int | None,
    partner_id: int | None,
    site: str | None,
    route: str | None,
    since: date | datetime | None,
    until: date | datetime | None,
) -> list[Any]:
    """The one meaning of the records filters: a day in `since` or `until` is a whole day in the
    organisation's time zone, both ends included."""
    conditions: list[Any] = []
    if kind:
        conditions.append(col(ServiceRecord.kind) == str(kind))
    if process:
        conditions.append(
            col(ServiceRecord.process_id).in_(
                select(ServiceProcess.id).where(ServiceProcess.name == process)
            )
        )
    if customer_id is not None:
        conditions.append(col(ServiceRecord.customer_id) == customer_id)
    if partner_id is not None:
        conditions.append(col(ServiceRecord.partner_id) == partner_id)
    if site:
        conditions.append(col(ServiceRecord.site) == site)
    if route:
        conditions.append(col(ServiceRecord.route) == route)
    if since is not None:
        conditions.append(col(ServiceRecord.occurred_at) >= _start(since))
    if isinstance(until, datetime):
        conditions.append(col(ServiceRecord.occurred_at) <= _start(until))
    elif until is not None and until < date.max:
        conditions.append(col(ServiceRecord.occurred_at) < _start(until + timedelta(days=1)))
    return conditions


def records_query(
    *,
    session: Session,
    kind: RecordKind | str | None = None,
    process: str | None = None,
    customer_id: int | None = None,
    partner_id: int | None = None,
    site: str | None = None,
    route: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[ServiceRecord]:
    """Records matching every filter given, latest first."""
    conditions = _conditions(
        kind=kind, process=process, customer_id=customer_id, partner_id=partner_id,
        site=site, route=route, since=since, until=until,
    )  # fmt: skip
    statement = (
        select(ServiceRecord)
        .where(*conditions)
        .order_by(col(ServiceRecord.occurred_at).desc(), col(ServiceRecord.id).desc())
        .offset(offset)
        .limit(limit)
    )
    return list(session.exec(statement))


def count_records(
    *,
    session: Session,
    kind: RecordKind | str | None = None,
    process: str | None = None,
    customer_id: int | None = None,
    partner_id: int | None = None,
    site: str | None = None,
    route: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
) -> int:
    """How many records records_query would list with no limit."""
    conditions = _conditions(
        kind=kind, process=process, customer_id=customer_id, partner_id=partner_id,
        site=site, route=route, since=since, until=until,
    )  # fmt: skip
    statement = select(func.count()).select_from(ServiceRecord).where(*conditions)
    return int(session.exec(statement).one())


# --- processes -----------------------------------------------------------------------------------


def add_process(
    *, session: Session, name: str, description: str = ""
) -> tuple[ServiceProcess, bool]:
    """The process of this name, made if new (True) or given the description if one is said."""
    name = name.strip()
    if not name or len(name) > 80 or "\x00" in name:
        raise InvalidInput({"name": "must be 1 to 80 characters, without NUL"})
    existing = session.exec(select(ServiceProcess).where(ServiceProcess.name == name)).first()
    if existing is not None:
        if description:
            existing.description = description
            session.add(existing)
        return existing, False
    process = ServiceProcess(name=name, description=description)
    session.add(process)
    session.flush()
    return process, True


def process_names(*, session: Session) -> dict[int, str]:
    return {p.id: p.name for p in session.exec(select(ServiceProcess)) if p.id is not None}


@dataclass
class ProcessCounts:
    process: ServiceProcess
    total: int
    by_kind: dict[str, int]


def process_counts(*, session: Session) -> list[ProcessCounts]:
    """Every process by name, with how many records it has of each kind."""
    counts: dict[int, dict[str, int]] = {}
    rows = session.exec(
        select(ServiceRecord.process_id, ServiceRecord.kind, func.count()).group_by(
            col(ServiceRecord.process_id), col(ServiceRecord.kind)
        )
    )
    for process_id, kind, n in rows:
        counts.setdefault(process_id, {})[str(kind)] = int(n)
    processes = session.exec(select(ServiceProcess).order_by(col(ServiceProcess.name)))
    return [
        ProcessCounts(p, sum(counts.get(p.id or 0, {}).values()), counts.get(p.id or 0, {}))
        for p in processes
    ]
