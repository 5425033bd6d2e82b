"""The `improve` command line: set up the database, seed a demo, submit, send mail, run it all."""

import asyncio
import itertools
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func
from sqlmodel import Session, col, select

from improve import events
from improve.errors import ImproveError, field_errors
from models import (
    Access,
    Category,
    Channel,
    Colleague,
    Factor,
    ImprovementCreate,
    OutboxEmail,
    OutboxStatus,
)
from models.db import get_engine, init_db, schema_revision, session_scope
from models.factors import activities

app = typer.Typer(help="Improve: service improvements from idea to measured result.")
db_app = typer.Typer(help="The Improve database.")
outbox_app = typer.Typer(help="The email outbox.")
token_app = typer.Typer(help="API tokens for scripts and other systems.")
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")
app.add_typer(token_app, name="token")
console = Console()
err = Console(stderr=True)


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the newest schema, creating it if need be (safe to run again)."""
    init_db()
    console.print(
        f"Database ready at [bold]{get_engine().url.render_as_string()}[/], "
        f"at revision [bold]{schema_revision()}[/]"
    )


@db_app.command("init")
def db_init() -> None:
    """The same as `improve db upgrade`."""
    db_upgrade()


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
    activity: Annotated[
        list[str] | None,
        typer.Option(
            help="What changes, ACTIVITY=QUANTITY/PER, e.g. letters=2000/month or "
            "electricity=-4000/year (minus: more); repeat for more lines. When given, the "
            "saving, kWh, CO2e, waste and paper are worked out from them and --saving, --kwh, "
            "--co2e, --waste and --paper are ignored. Activities: " + ", ".join(activities()),
        ),
    ] = None,
) -> None:
    """Submit an improvement: it is stored, routed by authority and the approvers are emailed."""
    from tasks.approvals import route_improvement
    from tasks.submission import submit_improvement

    # The same checks as the web form and the API: each field as the model is made (a number
    # that is NaN or infinite, a blank title), the rest in submit_improvement (who, for whom).
    try:
        data = ImprovementCreate.model_validate(dict(
            title=title, category=category, submitter_email=submitter, description=description,
            estimated_cost=cost, annual_saving=saving, kwh=kwh, kg_co2e=co2e, kg_waste=waste,
            sheets_paper=paper, customer_emails=customer or [], partner_emails=partner or [],
            activities=[_activity_line(text) for text in activity or []],
        ))  # fmt: skip
    except ValidationError as exc:
        fail(str(field_errors(exc)))
    try:
        with session_scope() as session:
            improvement = submit_improvement(session=session, data=data, channel=Channel.cli)
            improvement_id, submitter_id = improvement.id, improvement.submitter_id
            assert improvement_id is not None
        # Routing here means the CLI works without the stack; the route flow finds it done.
        with session_scope() as session:
            requests = route_improvement(
                session=session, improvement_id=improvement_id, actor=submitter, channel=Channel.cli
            )
            asked = [(session.get(Colleague, r.approver_id), r.level, r.reason) for r in requests]
    except ImproveError as exc:
        fail(str(exc))
    events.emit_submitted(
        improvement_id=improvement_id, submitter_id=submitter_id, channel=Channel.cli
    )
    console.print(f"[bold green]IMP-{improvement_id}[/] submitted: {data.title}")
    for approver, level, reason in asked:
        name = approver.name if approver else "?"
        console.print(f"  level {level}: [bold]{name}[/] — {reason}")
    if not asked:
        console.print("  approved within your own authority")
    console.print("Run `improve outbox send` to deliver the emails (the stack does it for you).")


def _activity_line(text: str) -> dict[str, str]:
    """ "letters=2000/month" → ActivityIn's fields (checked when ImprovementCreate is made)."""
    name, equals, rest = text.partition("=")
    amount, _, per = rest.partition("/")
    if not equals or not name.strip() or not amount.strip():
        fail(f"--activity {text!r}: write ACTIVITY=QUANTITY/PER, e.g. letters=2000/month")
    return {
        "activity": name.strip(),
        "quantity": amount.strip().replace(",", ""),
        "per": per.strip() or "year",
    }


@outbox_app.command("send")
def outbox_send() -> None:
    """Deliver every email that is due, now."""
    from tasks.outbox import send_due

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


@outbox_app.command("resend")
def outbox_resend(
    email_id: Annotated[
        int | None, typer.Argument(help="The id `improve outbox list` shows.")
    ] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed email.")] = False,
) -> None:
    """Put a failed email (or every one) back in the queue, its attempts reset."""
    from tasks.outbox import resend

    if email_id is None and not all_failed:
        fail("name the email to send again (its id in `improve outbox list`), or say --all-failed")
    if email_id is not None and all_failed:
        fail("name one email or say --all-failed, not both")
    try:
        with session_scope() as session:
            if email_id is not None:
                ids = [email_id]
            else:
                failed = session.exec(
                    select(OutboxEmail.id)
                    .where(OutboxEmail.status == OutboxStatus.failed)
                    .order_by(OutboxEmail.id)  # type: ignore[arg-type]
                )
                ids = [i for i in failed if i is not None]
            rows = [resend(session=session, email_id=i, by="improve outbox resend") for i in ids]
            done = [(row.id, row.recipient, row.template) for row in rows]
    except ImproveError as exc:
        fail(str(exc))
    for row_id, recipient, template in done:
        console.print(f"Email {row_id} ({template} to {recipient}) is queued again.")
    if not done:
        console.print("No failed email to send again.")
    else:
        console.print("Run `improve outbox send` to send now (the stack does it for you).")


@token_app.command("create")
def token_create(
    colleague: Annotated[str, typer.Option(help="Email of the colleague the token acts as.")],
    name: Annotated[str, typer.Option(help="What it is for, e.g. 'billing export'.")],
) -> None:
    """Make an API token; it is printed once, and only its hash is kept."""
    from tasks.access import create_api_token

    try:
        with session_scope() as session:
            row, token = create_api_token(session=session, email=colleague, name=name)
            token_id = row.id
    except ImproveError as exc:
        fail(str(exc))
    console.print(f"API token {token_id} ({name}) acting as {colleague.lower()}:")
    print(token)  # noqa: T201  (alone on its line, so a script can read it)
    console.print(
        "Keep it secret: it is shown only now. Send it as `Authorization: Bearer <token>`; "
        f"`improve token revoke {token_id}` stops it."
    )


@token_app.command("list")
def token_list() -> None:
    """The API tokens, whom they act as, and when each was last used."""
    from models import ApiToken

    table = Table("id", "name", "acts as", "created", "last used", "revoked")
    with Session(get_engine()) as session:
        rows = session.exec(
            select(ApiToken, Colleague)
            .join(Colleague, Colleague.id == ApiToken.colleague_id)  # type: ignore[arg-type]
            .order_by(ApiToken.id)  # type: ignore[arg-type]
        ).all()
        for token, colleague in rows:
            table.add_row(
                str(token.id), token.name, colleague.email, f"{token.created_at:%Y-%m-%d %H:%M}",
                f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never",
                f"{token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "",
            )  # fmt: skip
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id.")]) -> None:
    """Stop a token: from now on it opens nothing."""
    from tasks.access import revoke_api_token

    try:
        with session_scope() as session:
            row = revoke_api_token(session=session, token_id=token_id)
            name, when = row.name, row.revoked_at
    except ImproveError as exc:
        fail(str(exc))
    console.print(f"API token {token_id} ({name}) revoked at {when:%Y-%m-%d %H:%M} UTC.")


@app.command()
def role(
    email: Annotated[str, typer.Argument(help="The colleague's email.")],
    access: Annotated[Access, typer.Argument(help="colleague, operations or admin.")],
) -> None:
    """Give a colleague a role (the first admin is made here; admins can then use /colleagues)."""
    from tasks.access import set_access

    try:
        with session_scope() as session:
            colleague = set_access(session=session, email=email, access=access, by="improve role")
            name = colleague.name
    except ImproveError as exc:
        fail(str(exc))
    console.print(f"{name} now has the {access} role.")


@app.command("sign-in-link")
def sign_in_link(
    email: Annotated[str, typer.Argument(help="The colleague's email.")],
) -> None:
    """Print a single-use sign-in link for a colleague (for whoever runs Improve: the first
    sign-in, or where no mail reaches the colleague yet)."""
    from improve.settings import settings
    from tasks.access import find_colleague, new_sign_in_link, sign_in_url

    with session_scope() as session:
        colleague = find_colleague(session=session, email=email)
        if colleague is None:
            fail(f"no active colleague has the email {email!r}")
        _, token = new_sign_in_link(session=session, colleague=colleague)
        name = colleague.name
    console.print(
        f"Sign in as {name} with this link (once, within {settings.sign_in_link_minutes} minutes):"
    )
    print(sign_in_url(token))  # noqa: T201


@app.command()
def up(
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Seed the demo first.")] = True,
    web_port: Annotated[int, typer.Option(help="Port of the web app.")] = 8000,
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server and UI.")] = 4200,
    smtp_port: Annotated[
        int | None, typer.Option(help="Port of the local mail sink; default IMPROVE_SMTP_PORT.")
    ] = None,
) -> None:
    """Start Improve on one machine and keep it running: Prefect server and flows, web app, mail
    sink. A part that dies is restarted; Ctrl-C or SIGTERM stops them all."""
    from improve.stack import up as run_stack

    run_stack(demo=demo, web_port=web_port, prefect_port=prefect_port, smtp_port=smtp_port)


# --- customers -----------------------------------------------------------------------------------

customer_app = typer.Typer(help="Customers: how and when they are written to, and what about.")
app.add_typer(customer_app, name="customer")


def _show_customer(email: str) -> None:
    from models import Customer, CustomerConsent
    from tasks.contact import window_text

    with Session(get_engine()) as session:
        customer = session.exec(
            select(Customer).where(func.lower(Customer.email) == email.strip().lower())
        ).first()
        if customer is None:
            fail(f"no customer has the email {email!r}")
        consents = session.exec(
            select(CustomerConsent).where(CustomerConsent.customer_id == customer.id)
        ).all()
        limit = "none" if customer.weekly_limit is None else str(customer.weekly_limit)
        console.print(f"[bold]{customer.name}[/] <{customer.email}>")
        console.print(
            f"  language {customer.language}, {customer.contact_format}, "
            f"non-urgent email {window_text(customer)}, weekly limit {limit}"
        )
        for consent in sorted(consents, key=lambda c: c.purpose):
            said = "yes" if consent.granted else "no"
            console.print(
                f"  {consent.purpose}: {said} ({consent.channel}, {consent.changed_at:%Y-%m-%d})"
            )


@customer_app.command("show")
def customer_show(email: Annotated[str, typer.Argument(help="The customer's email.")]) -> None:
    """A customer's preferences and their yes or no to each purpose."""
    _show_customer(email)


@customer_app.command("set")
def customer_set(
    email: Annotated[str, typer.Argument(help="The customer's email.")],
    language: Annotated[str | None, typer.Option(help="en or cy.")] = None,
    format: Annotated[  # noqa: A002  (the option reads best as --format)
        str | None, typer.Option("--format", help="html or text.")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="When non-urgent email may arrive, e.g. 09:00-17:00; 'any' for always."),
    ] = None,
    weekly_limit: Annotated[
        int | None, typer.Option(help="Most non-essential emails in any seven days.")
    ] = None,
    no_weekly_limit: Annotated[
        bool, typer.Option("--no-weekly-limit", help="Take the weekly limit away.")
    ] = False,
    consent: Annotated[
        list[str] | None,
        typer.Option(help="PURPOSE=yes or PURPOSE=no, as the customer told you; repeatable."),
    ] = None,
) -> None:
    """Change how a customer is written to; emails already waiting follow the change."""
    from models import Purpose
    from tasks.consent import record_consent
    from tasks.contact import customer_by_email, set_contact_preferences

    said: list[tuple[Purpose, bool]] = []
    for item in consent or []:
        purpose, _, answer = item.partition("=")
        try:
            said.append((Purpose(purpose.strip()), {"yes": True, "no": False}[answer.strip()]))
        except (ValueError, KeyError):
            fail(
                f"--consent {item!r}: say PURPOSE=yes or PURPOSE=no, the purpose one of "
                + ", ".join(p.value for p in Purpose)
            )
    try:
        with session_scope() as session:
            found = customer_by_email(session=session, email=email)
            assert found.id is not None
            customer = set_contact_preferences(
                session=session, customer_id=found.id, language=language, contact_format=format,
                window=window, weekly_limit=weekly_limit, no_weekly_limit=no_weekly_limit,
            )  # fmt: skip
            for purpose, granted in said:
                record_consent(
                    session=session, customer=customer, purpose=purpose, granted=granted,
                    channel="cli",
                )  # fmt: skip
            stored = customer.email
    except ImproveError as exc:
        fail(str(exc))
    _show_customer(stored)


# --- action items ------------------------------------------------------------------------------

action_app = typer.Typer(help="The steps of action plans: who owns them, and passing them on.")
app.add_typer(action_app, name="action")


@action_app.command("list")
def action_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only the open ones.")] = False,
) -> None:
    """Action items, soonest due first: id, improvement, step, owner, due date and status."""
    from models import ActionItem, ActionStatus, Improvement

    table = Table("id", "improvement", "step", "owner", "due", "status", "link until")
    with Session(get_engine()) as session:
        query = (
            select(ActionItem, Improvement, Colleague)
            .join(Improvement, Improvement.id == ActionItem.improvement_id)  # type: ignore[arg-type]
            .outerjoin(Colleague, Colleague.id == ActionItem.owner_id)  # type: ignore[arg-type]
            .order_by(ActionItem.due_on, ActionItem.id)  # type: ignore[arg-type]
        )
        if open_only:
            query = query.where(ActionItem.status == ActionStatus.open)
        for item, improvement, owner in session.exec(query).all():
            table.add_row(
                str(item.id), improvement.reference, item.title[:50],
                owner.email if owner else ("automatic" if item.automatic_step else "nobody"),
                item.due_on.isoformat(), item.status,
                f"{item.token_expires_at:%Y-%m-%d}" if item.token_expires_at else "",
            )  # fmt: skip
    console.print(table)


@action_app.command("reassign")
def action_reassign(
    action_id: Annotated[int, typer.Argument(help="The id `improve action list` shows.")],
    to: Annotated[str, typer.Option("--to", help="Email of the colleague who takes it on.")],
    by: Annotated[
        str, typer.Option(help="Who is moving it, for the history.")
    ] = "improve action reassign",
) -> None:
    """Give an open action item to someone else; they get an email with a new link."""
    from tasks.follow_up import reassign_action

    try:
        with session_scope() as session:
            item = reassign_action(session=session, action_id=action_id, to_email=to, by=by)
            title = item.title
    except ImproveError as exc:
        fail(str(exc))
    console.print(f"Action {action_id} ({title}) is now {to.strip().lower()}'s.")
    console.print("Run `improve outbox send` to send the email now (the stack does it for you).")


# --- customer cases ----------------------------------------------------------------------------

case_app = typer.Typer(help="Customer cases: open them, delay them, send the customer updates.")
app.add_typer(case_app, name="case")
By = Annotated[str, typer.Option("--by", help="Your email as a colleague: who is acting.")]
When = typer.Option(
    "--next-update", help="When the customer next hears from us, e.g. 2026-12-01T09:00 (UTC)."
)


def _acting(session: Session, email: str) -> Colleague:
    colleague = session.exec(
        select(Colleague).where(Colleague.email == email.strip().lower())
    ).first()
    if colleague is None:
        fail(f"--by: no colleague has the email {email.strip().lower()!r}")
    return colleague


def _moment(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: {value!r} is not a date and time such as 2026-12-01T09:00")


def _show(case_id: int) -> None:
    from tasks.cases import case_view

    with Session(get_engine()) as session:
        view = case_view(session=session, case_id=case_id)
    case = view.case
    due = f"{case.next_update_due:%Y-%m-%d %H:%M} UTC" if case.next_update_due else "—"
    console.print(f"[bold]{case.reference}[/] {escape(case.subject)} · {case.status}")
    console.print(
        f"  customer {view.customer.name} <{view.customer.email}> · owner {view.owner.email}"
    )
    console.print(f"  promised {case.promised_on or '—'} · next update due {due}")
    if case.delay_reason:
        console.print(f"  delayed: {escape(case.delay_reason)}")
    for update in view.updates:
        console.print(f"  sent {update.at:%Y-%m-%d %H:%M} by {update.sent_by}: ", end="")
        console.print(update.subject, markup=False)
    for note in view.notes:
        console.print(
            f"  {note.at:%Y-%m-%d %H:%M} {note.what} ({note.actor}, {note.channel}) {note.note}",
            markup=False,
        )


@case_app.command("open")
def case_open(
    customer: Annotated[str, typer.Option(help="The customer's email.")],
    subject: Annotated[str, typer.Option(help="What the case is about, in a line.")],
    by: By,
    details: Annotated[str, typer.Option(help="More about it.")] = "",
    owner: Annotated[str | None, typer.Option(help="Who owns it; you, if left out.")] = None,
    promised: Annotated[str | None, typer.Option(help="Date promised, e.g. 2026-12-05.")] = None,
    next_update: Annotated[str | None, When] = None,
) -> None:
    """Open a case for a known customer."""
    from datetime import date

    from tasks.cases import open_case

    try:
        promised_on = date.fromisoformat(promised) if promised else None
    except ValueError:
        fail(f"--promised: {promised!r} is not a date such as 2026-12-05")
    try:
        with session_scope() as session:
            case = open_case(
                session=session, by=_acting(session, by), channel=Channel.cli,
                customer_email=customer, subject=subject, details=details, owner_email=owner,
                promised_on=promised_on, next_update_due=_moment(next_update, "--next-update"),
            )  # fmt: skip
            case_id = case.id
    except ImproveError as exc:
        fail(str(exc))
    assert case_id is not None
    _show(case_id)


@case_app.command("list")
def case_list(
    status: Annotated[str | None, typer.Option(help="Only cases in this status.")] = None,
    overdue: Annotated[
        bool | None, typer.Option("--overdue/--not-overdue", help="Update due now, or not.")
    ] = None,
) -> None:
    """Cases whose update is due soonest first."""
    from models import CaseStatus, Customer
    from models.db import utcnow
    from tasks.cases import CaseFilter, is_overdue, list_cases

    if status is not None and status not in CaseStatus.__members__:
        fail(f"--status: {status!r} is not one of {', '.join(CaseStatus)}")
    table = Table("case", "subject", "customer", "owner", "status", "next update due")
    with Session(get_engine()) as session:
        rows, total = list_cases(
            session=session,
            wanted=CaseFilter(status=CaseStatus(status) if status else None, overdue=overdue),
            limit=500,
        )
        now = utcnow()
        for case in rows:
            customer = session.get(Customer, case.customer_id)
            owner = session.get(Colleague, case.owner_id)
            due = f"{case.next_update_due:%Y-%m-%d %H:%M}" if case.next_update_due else ""
            table.add_row(
                case.reference, case.subject[:50], customer.email if customer else "?",
                owner.email if owner else "?", case.status,
                f"{due} OVERDUE" if is_overdue(case, now) else due,
            )  # fmt: skip
    console.print(table)
    console.print(f"{total} case{'' if total == 1 else 's'}")


@case_app.command("show")
def case_show(case_id: Annotated[int, typer.Argument(help="The case's number.")]) -> None:
    """One case with its updates and history."""
    try:
        _show(case_id)
    except ImproveError as exc:
        fail(str(exc))


@case_app.command("delay")
def case_delay(
    case_id: Annotated[int, typer.Argument(help="The case's number.")],
    reason: Annotated[str, typer.Option(help="Why it is off plan.")],
    by: By,
    next_update: Annotated[str | None, When] = None,
) -> None:
    """Mark a case delayed, with a reason; it sets when the next update is due."""
    from tasks.cases import mark_delayed

    try:
        with session_scope() as session:
            mark_delayed(
                session=session, case_id=case_id, by=_acting(session, by), channel=Channel.cli,
                reason=reason, next_update_due=_moment(next_update, "--next-update"),
            )  # fmt: skip
    except ImproveError as exc:
        fail(str(exc))
    _show(case_id)


@case_app.command("update")
def case_update(
    case_id: Annotated[int, typer.Argument(help="The case's number.")],
    by: By,
    subject: Annotated[str | None, typer.Option(help="Leave out for the drafted one.")] = None,
    body: Annotated[str | None, typer.Option(help="Leave out for the drafted one.")] = None,
    next_update: Annotated[str | None, When] = None,
    preview: Annotated[bool, typer.Option(help="Show the draft; send nothing.")] = False,
) -> None:
    """Send the customer an update (the draft, or your words); --preview shows the draft."""
    from tasks.updates import preview_update, send_update

    try:
        with session_scope() as session:
            draft = preview_update(session=session, case_id=case_id)
            if preview:
                console.print(f"Subject: {draft.subject}\n\n{draft.body}", markup=False)
                return
            acting = _acting(session, by)
            sent = send_update(
                session=session, case_id=case_id, by=acting, channel=Channel.cli,
                subject=draft.subject if subject is None else subject,
                body=draft.body if body is None else body,
                next_update_due=_moment(next_update, "--next-update"),
            )  # fmt: skip
    except ImproveError as exc:
        fail(str(exc))
    events.emit_actions_completed(
        improvement_id=sent.improvement_id, action_ids=sent.completed_action_ids, owner_id=acting.id
    )
    console.print(f"Update sent to the outbox: {escape(sent.update.subject)}")
    console.print("Run `improve outbox send` to deliver it now (the stack does it for you).")


@case_app.command("close")
def case_close(
    case_id: Annotated[int, typer.Argument(help="The case's number.")],
    by: By,
    reason: Annotated[str, typer.Option(help="The outcome.")] = "",
) -> None:
    """Close a case: no more updates fall due."""
    from tasks.cases import change_case

    try:
        with session_scope() as session:
            change_case(
                session=session, case_id=case_id, by=_acting(session, by), channel=Channel.cli,
                close=True, reason=reason,
            )  # fmt: skip
    except ImproveError as exc:
        fail(str(exc))
    _show(case_id)


# --- service records -----------------------------------------------------------------------------

import_app = typer.Typer(help="Bring data in from the service's own systems.")
app.add_typer(import_app, name="import")
process_app = typer.Typer(help="Service processes: billing, field visits, deliveries, ...")
app.add_typer(process_app, name="process")
SHOWN_REFUSALS = 20


def _data_lines(path: Path) -> int:
    """Rows under the header, counted fast for the progress bar (a quoted newline overcounts)."""
    with path.open("rb") as file:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
    return max(lines - 1, 0)


@import_app.command("records")
def import_records_file(
    file: Annotated[Path, typer.Argument(help="CSV: key,process,kind,occurred_at,quantity,...")],
    show_all: Annotated[bool, typer.Option("--all", help="List every refused row.")] = False,
) -> None:
    """Import service records from a CSV file; bad rows are named, the rest go in, and the same
    file twice stores nothing new."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from tasks.records import RecordFileError, import_records, read_csv

    try:
        rows = read_csv(file)
        first = next(rows, None)  # reads the header: a bad file stops here, before any row
        total = _data_lines(file)
    except (RecordFileError, OSError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, TimeRemainingColumn(), console=console) as progress:
            task = progress.add_task("Importing rows", total=total)
            with Session(get_engine()) as session:
                summary = import_records(
                    session=session,
                    rows=itertools.chain([first] if first is not None else [], rows),
                    on_batch=lambda done: progress.update(task, completed=done),
                )
    except RecordFileError as exc:  # unreadable part way: the batches before it are stored
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    table = Table("rows", "count", title=f"Imported {file.name}")
    table.add_row("taken", str(summary.taken))
    table.add_row("already there", str(summary.already))
    table.add_row("refused", str(len(summary.refused)), style="red" if summary.refused else "")
    console.print(table)
    if summary.processes_created:
        console.print("New processes: " + ", ".join(summary.processes_created))
    shown = summary.refused if show_all else summary.refused[:SHOWN_REFUSALS]
    for refusal in shown:
        console.print(f"  {escape(str(refusal))}", highlight=False)
    if len(shown) < len(summary.refused):
        console.print(f"  ... and {len(summary.refused) - len(shown)} more (--all lists them)")
    if summary.refused and not summary.taken and not summary.already:
        raise typer.Exit(1)  # nothing of the file went in


@process_app.command("add")
def process_add(
    name: Annotated[str, typer.Argument(help='e.g. "billing" or "field visits".')],
    description: Annotated[str, typer.Option(help="What the process does.")] = "",
) -> None:
    """Add a service process (or change the description of one that exists)."""
    from tasks.records import add_process

    try:
        with session_scope() as session:
            process, made = add_process(session=session, name=name, description=description)
            shown = process.name
    except ImproveError as exc:
        fail(str(exc))
    console.print(f"Process {shown!r} {'added' if made else 'is already there'}.")


@process_app.command("list")
def process_list() -> None:
    """The service processes with how many records each has, of each kind."""
    from tasks.records import process_counts

    table = Table("process", "records", "by kind", "description")
    with Session(get_engine()) as session:
        for row in process_counts(session=session):
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(row.by_kind.items()))
            table.add_row(row.process.name, str(row.total), kinds, row.process.description)
    console.print(table)


# --- service partners -------------------------------------------------------------------------

partner_app = typer.Typer(help="Service partners: who they are, and whether they hear of policies.")
app.add_typer(partner_app, name="partner")


@partner_app.command("add")
def partner_add(
    name: Annotated[str, typer.Argument(help="The partner, e.g. GreenPost Ltd.")],
    email: Annotated[str, typer.Argument(help="The address Improve writes to.")],
    contact: Annotated[str, typer.Option(help="The person there we write to.")] = "",
    service: Annotated[str, typer.Option(help="What they do for us.")] = "",
    hears_policies: Annotated[
        bool, typer.Option("--hears-policies", help="They agreed to hear of policy changes.")
    ] = False,
) -> None:
    """Add a service partner."""
    from tasks.partners import add_partner

    try:
        with session_scope() as session:
            partner = add_partner(
                session=session, name=name, email=email, contact_name=contact,
                service=service, hears_policies=hears_policies,
            )  # fmt: skip
            shown = f"{partner.name} <{partner.email}>"
    except ImproveError as exc:
        fail(str(exc))
    console.print(f"Partner {shown} added.", highlight=False)


@partner_app.command("set")
def partner_set(
    email: Annotated[str, typer.Argument(help="The partner's email.")],
    hears_policies: Annotated[
        bool,
        typer.Option(
            "--hears-policies/--no-hears-policies",
            help="They agreed to hear of policy changes, or no longer want to.",
        ),
    ],
) -> None:
    """Record what a partner told you; a no also skips the policy notices waiting for them."""
    from tasks.partners import partner_by_email, set_hears_policies

    try:
        with session_scope() as session:
            found = partner_by_email(session=session, email=email)
            assert found.id is not None
            partner = set_hears_policies(session=session, partner_id=found.id, hears=hears_policies)
            said = "hears" if partner.hears_policies else "does not hear"
            shown = f"{partner.name} {said} of policy changes."
    except ImproveError as exc:
        fail(str(exc))
    console.print(shown, highlight=False)


@partner_app.command("list")
def partner_list() -> None:
    """The service partners, and whether each hears of policy changes."""
    from models import Partner

    table = Table("partner", "email", "contact", "service", "hears of policies")
    with Session(get_engine()) as session:
        for p in session.exec(select(Partner).order_by(col(Partner.name))):
            table.add_row(
                p.name, p.email, p.contact_name, p.service, "yes" if p.hears_policies else "no"
            )
    console.print(table)


# --- conversion factors ------------------------------------------------------------------------

factors_app = typer.Typer(help="Conversion factor sets: the published year-sets estimates use.")
app.add_typer(factors_app, name="factors")


@factors_app.command("list")
def factors_list() -> None:
    """Every loaded set: which is in force, its year and document, how many lines used it."""
    from tasks.factors import factor_sets

    with session_scope() as session:  # the shipped set is loaded on first use
        rows = factor_sets(session=session)
        table = Table("set", "in force", "year", "factors", "lines worked out", "document")
        for factor_set, factors, used in rows:
            table.add_row(
                factor_set.name, "yes" if factor_set.in_force else "", str(factor_set.year),
                str(len(factors)), str(used), escape(factor_set.document),
            )  # fmt: skip
    console.print(table)


@factors_app.command("show")
def factors_show(name: Annotated[str, typer.Argument(help='The set, e.g. "uk-2025".')]) -> None:
    """Each factor of one set: its value, unit and where in the published file it is."""
    from tasks.factors import factor_sets

    with session_scope() as session:
        found = [row for row in factor_sets(session=session) if row[0].name == name]
        if not found:
            known = ", ".join(row[0].name for row in factor_sets(session=session))
            fail(f"no factor set {name!r}; loaded: {known}")
        factor_set, factors, used = found[0]
        in_force = " — in force" if factor_set.in_force else ""
        console.print(
            f"[bold]{factor_set.name}[/] ({factor_set.year}){in_force}: "
            f"{escape(factor_set.document)}; {used} activity line(s) worked out with it"
        )
        # A line a factor, never wrapped: the source is long, and people grep for row IDs.
        for factor in factors:
            note = f"; derived: {factor.note}" if factor.note else ""
            console.print(
                f"  {factor.activity}: {factor.kg_co2e:.6g} kg CO2e per {factor.unit} — "
                f"{factor.source_table}, row {factor.source_row}{note}",
                markup=False,
                soft_wrap=True,
            )


@factors_app.command("import")
def factors_import(
    file: Annotated[Path, typer.Argument(help="The government's flat file (CSV) for a year.")],
    name: Annotated[
        str | None, typer.Option(help='Its name; default "uk-<year>" from the file.')
    ] = None,
    use: Annotated[bool, typer.Option("--use", help="Put it in force for new estimates.")] = False,
) -> None:
    """Load a year's flat file as a new set; a loaded set never changes."""
    from tasks.factors import load_factor_set

    try:
        with session_scope() as session:
            factor_set, missing = load_factor_set(session=session, path=file, name=name, use=use)
            loaded = len(
                session.exec(select(Factor).where(Factor.factor_set_id == factor_set.id)).all()
            )
            summary = (
                f"Loaded [bold]{factor_set.name}[/] ({factor_set.year}): {loaded} factors"
                + (", now in force" if use else "; put it in force with "
                   f"`improve factors use {factor_set.name}`")
            )  # fmt: skip
    except ImproveError as exc:
        fail(str(exc))
    console.print(summary)
    if missing:
        console.print(
            f"The file lacks {len(missing)} of Improve's factors: {', '.join(missing)}; "
            "an activity that needs one is refused while this set is in force."
        )


@factors_app.command("use")
def factors_use(name: Annotated[str, typer.Argument(help='The set, e.g. "uk-2026".')]) -> None:
    """Put a loaded set in force for new estimates; estimates already made keep theirs."""
    from tasks.factors import factor_set_in_force, use_factor_set

    try:
        with session_scope() as session:
            before = factor_set_in_force(session=session).name
            use_factor_set(session=session, name=name)
    except ImproveError as exc:
        fail(str(exc))
    console.print(
        f"[bold]{name}[/] is in force for new estimates (was {before}); "
        "estimates already made keep the set they were worked out with."
    )


if __name__ == "__main__":
    app()


# --- policies ----------------------------------------------------------------------------------

policy_app = typer.Typer(help="The policy library: policies, what they touch, their versions.")
app.add_typer(policy_app, name="policy")


@policy_app.command("add")
def policy_add(
    title: Annotated[str, typer.Argument(help='e.g. "Paperless by default".')],
    summary: Annotated[str, typer.Option(help="What it commits us to, in a few lines.")] = "",
    link: Annotated[str, typer.Option(help="Where the full text is published.")] = "",
    owner: Annotated[str | None, typer.Option(help="The owning colleague's email.")] = None,
    process: Annotated[
        list[str] | None, typer.Option(help="A service process it touches (repeat for more).")
    ] = None,
) -> None:
    """Add a policy to the library: a draft until `improve policy publish`."""
    from tasks.policies import add_policy

    try:
        with session_scope() as session:
            policy = add_policy(
                session=session,
                title=title,
                summary=summary,
                link=link,
                owner_email=owner,
                processes=process or [],
            )
            policy_id = policy.id
    except ImproveError as exc:
        fail(str(exc))
    console.print(f"Policy {policy_id} {title!r} added (a draft until a version is published).")


@policy_app.command("list")
def policy_list() -> None:
    """The library: each policy's id, version, owner, processes and when it was published."""
    from tasks.policies import policy_rows, subscriber_counts

    table = Table("id", "policy", "version", "owner", "processes", "published")
    with Session(get_engine()) as session:
        for row in policy_rows(session=session):
            table.add_row(
                str(row.policy.id),
                row.policy.title,
                row.policy.version or "draft",
                row.owner.email if row.owner else "—",
                ", ".join(p.name for p in row.processes) or "—",
                f"{row.policy.published_at:%Y-%m-%d %H:%M}" if row.policy.published_at else "—",
            )
        counts = subscriber_counts(session=session)
    console.print(table)
    console.print(
        f"A new version goes to {counts['customers']} customers and {counts['partners']} partners."
    )


@policy_app.command("publish")
def policy_publish(
    policy_id: Annotated[int, typer.Argument(help="The id `improve policy list` shows.")],
    version: Annotated[str, typer.Argument(help='e.g. "2.1"; one not published before.')],
    changes: Annotated[str, typer.Option(help="What is new: the notice tells subscribers.")],
) -> None:
    """Publish a new version and queue one notice for each subscriber; the sweep sends them."""
    from tasks.policies import notice_progress, publish

    try:
        with session_scope() as session:
            published = publish(
                session=session,
                policy_id=policy_id,
                version=version,
                changes=changes,
                actor="improve policy publish",
            )
            version_id = published.id
    except ImproveError as exc:
        fail(str(exc))
    assert version_id is not None
    with Session(get_engine()) as session:
        progress = notice_progress(session=session, version_id=version_id)
    console.print(
        f"Version {version} published; {progress['total']} notices queued "
        "(`improve outbox send` sends them now; the stack's sweep does it within minutes)."
    )


# --- initiatives ---------------------------------------------------------------------------------

initiative_app = typer.Typer(help="Initiatives customers and partners are invited to take part in.")
app.add_typer(initiative_app, name="initiative")


@initiative_app.command("add")
def initiative_add(
    title: Annotated[str, typer.Option(help="What people are invited to take part in.")],
    owner: Annotated[str, typer.Option(help="The colleague who hears every answer (email).")],
    description: Annotated[str, typer.Option(help="What taking part means, for the invited.")] = "",
    improvement: Annotated[
        int | None, typer.Option(help="The improvement it serves (its number).")
    ] = None,
) -> None:
    """Start an initiative."""
    from tasks.participation import create_initiative, find_owner, initiative_url

    try:
        with session_scope() as session:
            initiative = create_initiative(
                session=session, title=title, description=description,
                improvement_id=improvement,
                owner_id=find_owner(session=session, email=owner).id,  # type: ignore[arg-type]
            )  # fmt: skip
            initiative_id = initiative.id
    except ImproveError as exc:
        fail(str(exc))
    assert initiative_id is not None
    console.print(
        f"Initiative {initiative_id}: {escape(title.strip())} · {initiative_url(initiative_id)}"
    )


@initiative_app.command("invite")
def initiative_invite(
    initiative_id: Annotated[int, typer.Argument(help="The initiative's number.")],
    customer: Annotated[
        list[str] | None, typer.Option("--customer", help="A customer's email (repeatable).")
    ] = None,
    partner: Annotated[
        list[str] | None, typer.Option("--partner", help="A partner's email (repeatable).")
    ] = None,
) -> None:
    """Invite customers (those who agreed to invitations) and partners; each is invited once."""
    from tasks.participation import contacts_by_email, invite

    if not customer and not partner:
        fail("name someone to invite: --customer EMAIL or --partner EMAIL")
    try:
        with session_scope() as session:
            customers, partners = contacts_by_email(
                session=session, customer_emails=customer or [], partner_emails=partner or []
            )
            done = invite(
                session=session, initiative_id=initiative_id, customer_ids=customers,
                partner_ids=partners,
            )  # fmt: skip
    except ImproveError as exc:
        fail(str(exc))
    console.print(
        f"{done.invited} invited, {done.already} invited before (sent nothing again), "
        f"{done.not_consented} not invited (no consent to invitations). "
        "The emails go out with the outbox (`improve outbox send`)."
    )


@initiative_app.command("list")
def initiative_list() -> None:
    """Every initiative with how many were invited, accepted, declined and have not answered."""
    from tasks.participation import participation_summary

    table = Table("id", "initiative", "invited", "accepted", "declined", "no answer")
    with Session(get_engine()) as session:
        rows = participation_summary(session=session)
    for row in rows:
        table.add_row(
            str(row["id"]), escape(row["title"]), str(row["invited"]), str(row["accepted"]),
            str(row["declined"]), str(row["waiting"]),
        )  # fmt: skip
    console.print(table)
    console.print(f"{len(rows)} initiative{'' if len(rows) == 1 else 's'}")
