"""Importing service records: bad rows named by line and field, good ones stored once."""

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from improve.settings import settings
from models import RecordKind, ServiceProcess, ServiceRecord
from tasks.records import (
    RecordFileError,
    RowError,
    add_process,
    count_records,
    import_records,
    process_counts,
    read_csv,
    records_query,
)
from tests.factories import make_customer, make_partner

HEADER = "key,process,kind,occurred_at,quantity,customer_email,partner_email,site,route,detail\n"


def stored(session: Session) -> int:
    return session.exec(select(func.count()).select_from(ServiceRecord)).one()


def write(tmp_path: Path, text: str, name: str = "records.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_rows_go_in_and_bad_ones_are_named_by_line_and_field(
    session: Session, tmp_path: Path
) -> None:
    customer = make_customer(session, email="ann@example.com")
    partner = make_partner(session, email="vans@example.net")
    path = write(
        tmp_path,
        HEADER
        + "B-1,billing,letter_posted,2026-10-01T09:00:00Z,2,ANN@example.com,,,,statement\n"  # 2
        + "B-2,billing,letter_posted,2026-10-01T09:00:00Z,two,,,,,\n"  # 3: quantity
        + "F-1,field visits,site_visit,2026-10-02 10:30,1,nobody@example.com,,,,\n"  # 4: customer
        + "F-2,field visits,site_visit,yesterday,1,,,,,\n"  # 5: occurred_at
        + "D-1,deliveries,partner_delivery,2026-10-03T08:00+01:00,42.5,,vans@example.net,Depot,,\n"
        + "X-1,billing,letter_sent,2026-10-01T09:00:00Z,1,,,,,\n"  # 7: kind
        + "X-2,billing,page_printed,2026-10-01T09:00:00Z,-3,,,,,\n"  # 8: negative
        + "X-3,,page_printed,2026-10-01T09:00:00Z,3,,,,,\n",  # 9: process
    )

    summary = import_records(session=session, rows=read_csv(path))

    assert summary.taken == 2 and summary.already == 0
    assert summary.refused == [
        RowError(3, "quantity", "must be a number"),
        RowError(4, "customer_email", "no customer has the email nobody@example.com"),
        RowError(5, "occurred_at", "must be a date and time like 2026-10-01T09:30:00"),
        RowError(7, "kind", "must be one of " + ", ".join(RecordKind)),
        RowError(8, "quantity", "must be 0 or more"),
        RowError(9, "process", "must not be blank"),
    ]
    assert str(summary.refused[0]) == "line 3, quantity: must be a number"
    # Only processes that a stored row needed were made; a refused row makes nothing.
    assert summary.processes_created == ["billing", "deliveries"]
    letter = session.exec(select(ServiceRecord).where(ServiceRecord.key == "B-1")).one()
    assert (letter.kind, letter.quantity, letter.customer_id) == ("letter_posted", 2, customer.id)
    assert letter.occurred_at == datetime(2026, 10, 1, 9, tzinfo=UTC)
    delivery = session.exec(select(ServiceRecord).where(ServiceRecord.key == "D-1")).one()
    assert (delivery.partner_id, delivery.site) == (partner.id, "Depot")
    assert delivery.occurred_at == datetime(2026, 10, 3, 7, tzinfo=UTC)


def test_the_same_file_twice_changes_nothing(session: Session, tmp_path: Path) -> None:
    # No keys: each row's key is a hash of its fields, the same on the second import.
    path = write(
        tmp_path,
        "process,kind,occurred_at,quantity,site\n"
        + "".join(
            f"print room,page_printed,2026-10-{day:02}T12:00:00Z,{day * 10},HQ\n"
            for day in range(1, 11)
        ),
    )

    first = import_records(session=session, rows=read_csv(path), batch_size=4)
    second = import_records(session=session, rows=read_csv(path), batch_size=4)

    assert (first.taken, first.already, first.processes_created) == (10, 0, ["print room"])
    assert (second.taken, second.already, second.processes_created) == (0, 10, [])
    assert stored(session) == 10


def test_progress_is_told_after_each_batch(session: Session) -> None:
    rows = [
        {"key": f"k{i}", "process": "billing", "kind": "letter_posted",
         "occurred_at": "2026-10-01T09:00:00Z", "quantity": 1}
        for i in range(7)
    ]  # fmt: skip
    seen: list[int] = []

    summary = import_records(session=session, rows=rows, batch_size=3, on_batch=seen.append)

    assert seen == [3, 6, 7]
    assert summary.taken == 7


def test_a_naive_time_is_the_organisations_local_time(session: Session) -> None:
    assert settings.timezone == "Europe/London"
    rows = [
        # British Summer Time: 09:00 in London is 08:00 UTC; in winter they are the same.
        {"process": "p", "kind": "meter_reading", "occurred_at": "2026-07-01T09:00", "quantity": 5},
        {"process": "p", "kind": "meter_reading", "occurred_at": "2026-12-01T09:00", "quantity": 5},
        {"process": "p", "kind": "meter_reading", "occurred_at": "2026-07-02", "quantity": 5},
    ]

    import_records(session=session, rows=rows)

    times = sorted(r.occurred_at for r in session.exec(select(ServiceRecord)))
    assert times == [
        datetime(2026, 7, 1, 8, tzinfo=UTC),
        datetime(2026, 7, 1, 23, tzinfo=UTC),  # midnight of 2 July in London
        datetime(2026, 12, 1, 9, tzinfo=UTC),
    ]


def test_an_unknown_field_or_a_missing_one_is_named(session: Session) -> None:
    rows = [
        {"process": "p", "kind": "site_visit", "occurred_at": "2026-10-01T09:00", "quantity": 1,
         "colour": "red"},
        {"process": "p", "kind": "site_visit", "quantity": True},
    ]  # fmt: skip

    summary = import_records(session=session, rows=rows, first_line=0)

    assert [(e.line, e.field) for e in summary.refused] == [
        (0, "colour"),
        (1, "occurred_at"),
        (1, "quantity"),
    ]
    assert summary.refused[1].message == "is required"
    assert summary.taken == 0 and stored(session) == 0


def test_unknown_columns_refuse_the_whole_file_before_any_row(
    session: Session, tmp_path: Path
) -> None:
    path = write(tmp_path, "process,kind,occurred_at,quantiy\np,site_visit,2026-10-01,1\n")

    with pytest.raises(RecordFileError, match="unknown column 'quantiy'; the columns are key,"):
        import_records(session=session, rows=read_csv(path))
    with pytest.raises(RecordFileError, match="cannot read"):
        list(read_csv(tmp_path / "missing.csv"))
    assert stored(session) == 0


def test_a_bom_and_missing_optional_columns_are_fine(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b"\xef\xbb\xbfprocess,kind,occurred_at,quantity\r\n"
        b"contact centre,letter_posted,2026-10-01,3\r\n"
    )

    summary = import_records(session=session, rows=read_csv(path))

    assert (summary.taken, summary.refused) == (1, [])


def test_records_are_listed_by_each_filter(session: Session) -> None:
    customer = make_customer(session)
    rows = [
        {"key": "a", "process": "field visits", "kind": "site_visit", "quantity": 1,
         "occurred_at": "2026-10-01T10:00", "customer_email": customer.email},
        {"key": "b", "process": "field visits", "kind": "site_visit", "quantity": 1,
         "occurred_at": "2026-10-31T23:30", "customer_email": customer.email},
        {"key": "c", "process": "field visits", "kind": "site_visit", "quantity": 1,
         "occurred_at": "2026-11-01T00:30", "customer_email": customer.email},
        {"key": "d", "process": "fleet", "kind": "vehicle_trip", "quantity": 30,
         "occurred_at": "2026-10-05T08:00", "route": "North loop"},
    ]  # fmt: skip
    import_records(session=session, rows=rows)

    def keys(**filters: object) -> list[str]:
        return [r.key for r in records_query(session=session, **filters)]  # type: ignore[arg-type]

    # Days are whole days in London, both ends included, as detection's evidence links mean.
    october = {"since": date(2026, 10, 1), "until": date(2026, 10, 31)}
    assert keys(kind="site_visit", customer_id=customer.id, **october) == ["b", "a"]
    assert count_records(session=session, kind="site_visit", **october) == 2
    assert keys(process="fleet") == ["d"]
    assert keys(route="North loop") == ["d"]
    assert keys(since=datetime(2026, 11, 1, tzinfo=UTC)) == ["c"]
    assert keys(limit=2, offset=1) == ["b", "d"]


def test_processes_are_added_once_and_counted_by_kind(session: Session) -> None:
    process, made = add_process(session=session, name="billing", description="Bills and letters")
    again, made_again = add_process(session=session, name=" billing ")
    session.commit()
    import_records(
        session=session,
        rows=[
            {"process": "billing", "kind": kind, "occurred_at": f"2026-10-0{n}", "quantity": n}
            for n, kind in ((1, "letter_posted"), (2, "letter_posted"), (3, "page_printed"))
        ],
    )

    assert (made, made_again, again.id) == (True, False, process.id)
    [counts] = process_counts(session=session)
    assert (counts.process.name, counts.process.description) == ("billing", "Bills and letters")
    assert (counts.total, counts.by_kind) == (3, {"letter_posted": 2, "page_printed": 1})
    assert session.exec(select(func.count()).select_from(ServiceProcess)).one() == 1
