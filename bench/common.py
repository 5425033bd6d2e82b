"""What the benchmarks share: a private environment fixed before Improve is imported, and people."""

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any


def private_environment() -> Path:
    """A data folder of the benchmark's own; settings point at it before Improve reads them.

    IMPROVE_BENCH_DATABASE_URL picks another database (e.g. PostgreSQL); SQLite by default.
    """
    from improve.stack import free_port

    data = Path(tempfile.mkdtemp(prefix="improve-bench-"))
    os.environ.update(
        IMPROVE_DATA_DIR=str(data),
        IMPROVE_DATABASE_URL=os.environ.get(
            "IMPROVE_BENCH_DATABASE_URL", f"sqlite:///{data / 'improve.db'}"
        ),
        IMPROVE_SMTP_HOST="127.0.0.1",
        IMPROVE_SMTP_PORT=str(free_port()),
        PREFECT_HOME=str(data / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL=os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    )
    return data


def organisation(session: Any) -> tuple[Any, Any]:
    """A submitter and an approver whose authority covers resource improvements."""
    from models import Authority, Category, Colleague

    submitter = Colleague(
        name="Sam Submitter", email="sam@example.org", team="Billing", role="Adviser"
    )
    approver = Colleague(
        name="Alex Approver", email="alex@example.org", team="Billing", role="Team Leader"
    )
    session.add_all([submitter, approver])
    session.flush()
    session.add(
        Authority(
            colleague_id=approver.id, category=Category.resource, spending_limit=5_000, level=1
        )
    )
    session.commit()
    return submitter, approver


def submit(session: Any, submitter: Any, n: int) -> int:
    """Store one improvement as the web form would; its id. The caller commits."""
    from models import Channel, ImprovementCreate
    from tasks.submission import submit_improvement

    data = ImprovementCreate(
        title=f"Paperless statements, batch {n}",
        category="resource",
        submitter_email=submitter.email,
        estimated_cost=1_200,
        annual_saving=4_000,
    )
    improvement = submit_improvement(session=session, data=data, channel=Channel.api)
    assert improvement.id is not None
    return improvement.id


def summary(seconds: list[float], unit: str = "s") -> str:
    """p50, p95, mean and the range, in seconds (or milliseconds with unit="ms")."""
    scale = {"s": 1, "ms": 1000}[unit]
    ordered = [value * scale for value in sorted(seconds)]
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    width, places = (6, 2) if unit == "s" else (8, 1)

    def show(value: float) -> str:
        return f"{value:{width}.{places}f} {unit}"

    return (
        f"p50 {show(statistics.median(ordered))}   p95 {show(p95)}   "
        f"mean {show(statistics.fmean(ordered))}   min {show(ordered[0])}   "
        f"max {show(ordered[-1])}   (n={len(ordered)})"
    )
