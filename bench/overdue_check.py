"""The overdue check over 100,000 open cases: the indexed query against a full scan in Python.

Bulk-inserts N open customer cases (default 100,000), 1% of them with their next update already
due and no overdue improvement raised yet, the rest due in the coming weeks. Then, interleaved
so that drift on a busy machine hits both alike, it times each run of
  index  tasks.updates.overdue_case_ids: one range of ix_customer_case_update_due;
  scan   every open case loaded as a Case and filtered in Python, the way it would be done
         without the index (the baseline),
checks both found the same cases, and prints both, the ratio of their medians, and the plan the
database chose for the indexed query (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL).

    .venv/bin/python -m bench.overdue_check [--cases 100000] [--due-percent 1] [--runs 20]
"""

import argparse
import random
import statistics
import time
from datetime import timedelta
from typing import Any

from bench.common import private_environment, summary


def populate(cases: int, due_percent: float) -> tuple[int, float]:
    """Insert the cases in large batches; (how many are due, seconds the insert took)."""
    from sqlalchemy import insert

    from models import Case, CaseStatus, Colleague, Customer
    from models.db import session_scope, utcnow

    with session_scope() as session:
        owner = Colleague(name="Owen Owner", email="owen@example.org", team="Care", role="Adviser")
        customer = Customer(name="Cara Customer", email="cara@example.com")
        session.add_all([owner, customer])
        session.flush()
        owner_id, customer_id = owner.id, customer.id

    now = utcnow()
    rng = random.Random(8)  # the same cases every run, so runs compare
    due = set(rng.sample(range(cases), round(cases * due_percent / 100)))
    statuses = [CaseStatus.open, CaseStatus.delayed, CaseStatus.awaiting_customer]
    started = time.perf_counter()
    batch = 10_000
    # Core inserts with executemany: the ORM would build 100,000 objects only to write them.
    with session_scope() as session:
        for first in range(0, cases, batch):
            rows: list[dict[str, Any]] = []
            for n in range(first, min(first + batch, cases)):
                minutes = rng.randint(1, 7 * 24 * 60)
                when = (
                    now - timedelta(minutes=minutes)
                    if n in due
                    else now + timedelta(minutes=minutes)
                )
                rows.append(
                    {
                        "customer_id": customer_id,
                        "subject": f"Case {n}",
                        "details": "",
                        "owner_id": owner_id,
                        "status": statuses[n % len(statuses)],
                        "next_update_due": when,
                        "delay_reason": "",
                        "cannot_meet_reason": "",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            session.execute(insert(Case), rows)
    elapsed = time.perf_counter() - started
    from models.db import get_engine

    # Statistics for the planner, as a database that has run for a while would have them.
    with get_engine().begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    return len(due), elapsed


def indexed(now: Any) -> list[int]:
    from sqlmodel import Session

    from models.db import get_engine
    from tasks.updates import overdue_case_ids

    with Session(get_engine()) as session:
        # A limit above the number due, so both ways find every due case.
        return overdue_case_ids(session=session, now=now, limit=1_000_000)


def scanned(now: Any) -> list[int]:
    """Without the index: read every open case and decide in Python which are due."""
    from sqlmodel import Session, col, select

    from models import OPEN_STATUSES, Case
    from models.db import get_engine

    with Session(get_engine()) as session:
        cases = session.exec(select(Case).where(col(Case.status).in_(OPEN_STATUSES))).all()
        due = [
            c
            for c in cases
            if c.overdue_improvement_id is None
            and c.next_update_due is not None
            and c.next_update_due <= now
        ]
        due.sort(key=lambda c: (c.next_update_due, c.id))
        return [c.id for c in due if c.id is not None]


def query_plan(now: Any) -> list[str]:
    """The plan the database chose for the very statement overdue_case_ids sends."""
    from sqlalchemy import event

    from models.db import get_engine

    engine = get_engine()
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "customer_case" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        indexed(now)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = seen[-1]
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + statement, parameters).all()
    # SQLite answers (id, parent, notused, detail); PostgreSQL one line of text per row.
    return [str(row[-1]) for row in rows]


def measure(cases: int, due_percent: float, runs: int) -> None:
    private_environment()

    from models.db import get_engine, init_db, utcnow

    init_db()
    dialect = get_engine().dialect.name
    due, insert_seconds = populate(cases, due_percent)
    print(
        f"{cases:,} open cases on {dialect}, {due:,} due ({due_percent:g}%); "
        f"inserted in {insert_seconds:.1f} s"
    )
    now = utcnow()
    found = indexed(now)  # warm both paths once, untimed
    # As sets: cases due at the same moment may come back in either order.
    assert sorted(found) == sorted(scanned(now)), "the indexed query and the scan disagree"
    assert len(found) == due, f"the index found {len(found)} due cases, not {due}"

    index_times: list[float] = []
    scan_times: list[float] = []
    for run in range(runs):
        started = time.perf_counter()
        indexed(now)
        index_times.append(time.perf_counter() - started)
        # The scan takes seconds; a few runs are enough to know it, and leave the machine be.
        if run < max(3, runs // 4):
            started = time.perf_counter()
            scanned(now)
            scan_times.append(time.perf_counter() - started)

    ratio = statistics.median(scan_times) / statistics.median(index_times)
    print(f"Per run, finding the {due:,} due cases:")
    print(f"  overdue_case_ids (index)  {summary(index_times, unit='ms')}")
    print(f"  full scan in Python       {summary(scan_times, unit='ms')}")
    print(f"  the index is {ratio:,.0f}× faster (median against median)")
    print("Plan of the indexed query:")
    for line in query_plan(now):
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--due-percent", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    measure(args.cases, args.due_percent, args.runs)


if __name__ == "__main__":
    main()
