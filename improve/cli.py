"""The `improve` command line: set up the database, seed a demo, submit, send mail, run it all."""

import asyncio
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

from improve import events
from improve.errors import ImproveError, field_errors
from models import Category, Channel, Colleague, ImprovementCreate, OutboxEmail, OutboxStatus
from models.db import get_engine, init_db, session_scope

app = typer.Typer(help="Improve: service improvements from idea to measured result.")
db_app = typer.Typer(help="The Improve database.")
outbox_app = typer.Typer(help="The email outbox.")
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")
console = Console()
err = Console(stderr=True)


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


@db_app.command("init")
def db_init() -> None:
    """Create the tables (safe to run again)."""
    init_db()
    console.print(f"Database ready at [bold]{get_engine().url.render_as_string()}[/]")


@app.command()
def seed(demo: Annotated[bool, typer.Option("--demo", help="Brightwater Utilities demo.")] = False):
    """Load the demo organisation: colleagues, authorities, customers, partners, improvements."""
    if not demo:
        fail("say what to seed: `improve seed --demo`")
    from improve.demo import seed as seed_demo

    init_db()
    with session_scope() as session:
        counts = seed_demo(session=session)
    if not any(counts.values()):
        console.print("The demo organisation is already there; nothing changed.")
        return
    console.print(
        "Seeded Brightwater Utilities: "
        + ", ".join(f"{count} {what}" for what, count in counts.items())
    )


@app.command()
def submit(
    title: Annotated[str, typer.Option(help="What should change, in a line.")],
    category: Annotated[Category, typer.Option(help="What kind of improvement it is.")],
    submitter: Annotated[str, typer.Option(help="Your email address as a colleague.")],
    description: Annotated[str, typer.Option(help="Why, and what it would take.")] = "",
    cost: Annotated[float, typer.Option(help="Estimated one-off cost, £.")] = 0,
    saving: Annotated[float, typer.Option(help="Estimated annual saving, £.")] = 0,
    kwh: Annotated[float, typer.Option(help="Energy saved a year, kWh.")] = 0,
    co2e: Annotated[float, typer.Option(help="Emissions avoided a year, kg CO2e.")] = 0,
    waste: Annotated[float, typer.Option(help="Waste diverted a year, kg.")] = 0,
    paper: Annotated[int, typer.Option(help="Sheets of paper saved a year.")] = 0,
    customer: Annotated[
        list[str] | None, typer.Option(help="Email of a customer it touches.")
    ] = None,
    partner: Annotated[
        list[str] | None, typer.Option(help="Email of a partner it touches.")
    ] = None,
) -> None:
    """Submit an improvement: it is stored, routed by authority and the approvers are emailed."""
    from tasks.approvals import route_improvement
    from tasks.submission import submit_improvement

    try:
        data = ImprovementCreate(
            title=title, category=category, submitter_email=submitter, description=description,
            estimated_cost=cost, annual_saving=saving, kwh=kwh, kg_co2e=co2e, kg_waste=waste,
            sheets_paper=paper, customer_emails=customer or [], partner_emails=partner or [],
        )  # fmt: skip
    except ValidationError as exc:
        fail(str(field_errors(exc)))
    try:
        with session_scope() as session:
            improvement = submit_improvement(session=session, data=data, channel=Channel.cli)
            improvement_id = improvement.id
            assert improvement_id is not None
        # Routing here means the CLI works without the stack; the route flow finds it done.
        with session_scope() as session:
            requests = route_improvement(
                session=session, improvement_id=improvement_id, actor=submitter, channel=Channel.cli
            )
            asked = [(session.get(Colleague, r.approver_id), r.level, r.reason) for r in requests]
    except ImproveError as exc:
        fail(str(exc))
    events.emit(events.SUBMITTED, improvement_id=improvement_id)
    console.print(f"[bold green]IMP-{improvement_id}[/] submitted: {data.title}")
    for approver, level, reason in asked:
        name = approver.name if approver else "?"
        console.print(f"  level {level}: [bold]{name}[/] — {reason}")
    if not asked:
        console.print("  approved within your own authority")
    console.print("Run `improve outbox send` to deliver the emails (the stack does it for you).")


@outbox_app.command("send")
def outbox_send() -> None:
    """Deliver every email that is due, now."""
    from tasks.mail import send_due

    counts = asyncio.run(send_due())
    console.print(", ".join(f"{n} {what}" for what, n in counts.items()))


@outbox_app.command("list")
def outbox_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """Show the newest emails in the outbox and how they fared."""
    table = Table("id", "to", "template", "status", "attempts", "last error")
    with Session(get_engine()) as session:
        rows = session.exec(select(OutboxEmail).order_by(OutboxEmail.id.desc()).limit(limit))  # type: ignore[union-attr]
        for row in rows:
            style = "red" if row.status == OutboxStatus.failed else ""
            table.add_row(
                str(row.id), row.recipient, row.template, row.status, str(row.attempts),
                row.last_error[:60], style=style,
            )  # fmt: skip
    console.print(table)


@app.command()
def up(
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Seed the demo first.")] = True,
) -> None:
    """Start Improve on one machine: Prefect server and flows, web app, mail sink."""
    from improve.stack import up as run_stack

    run_stack(demo=demo)


if __name__ == "__main__":
    app()
