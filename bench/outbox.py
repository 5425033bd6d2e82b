"""Outbox throughput: N templated notices through Improve's outbox, beside raw aiosmtplib over one
connection and prefect-email's task per message, all to one SMTP sink in another process.

For each N (default 1,000 and 10,000):
  improve        N partner notices queued as outbox rows (queue_email, committed), then send_due
                 until the backlog is empty: claiming, the send-time verdict, rendering, sending
                 over the pool and recording, all timed (the queueing is shown, not counted);
  raw            the same N messages, each rendered with Improve's templates and sent, one after
                 another, over one aiosmtplib connection: no database, no bookkeeping (the
                 sending alone is shown too);
  prefect-email  `prefect_email.email_send_message`, one task run per message in one flow against
                 a Prefect server process, over a sample (--prefect-sample, default 300): it opens
                 a connection per message, so the full count would take minutes and say nothing
                 new.
The sink counts what it accepted; each method is checked to have delivered every message.

    .venv/bin/python -m bench.outbox [--messages 1000 10000] [--prefect-sample 300]
"""

import argparse
import asyncio
import multiprocessing
import socket
import time
from typing import Any

from bench.common import private_environment

NOTICE = {
    "partner_name": "GreenPost Ltd",
    "contact_name": "Dana Okafor",
    "reference": "IMP-7",
    "title": "Fewer letters, more e-statements",
    "summary": "From next month we post statements only to customers who ask for paper.",
    "impact_lines": ["1,000 fewer letters a year", "About 30 kg CO2e avoided a year"],
}


def _serve_sink(port: int, accepted: Any) -> None:
    """An aiosmtpd server that accepts and counts every message (runs in its own process)."""
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with accepted.get_lock():
                accepted.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def start_sink(port: int) -> tuple[multiprocessing.Process, Any]:
    context = multiprocessing.get_context("spawn")
    accepted = context.Value("q", 0)
    process = context.Process(target=_serve_sink, args=(port, accepted), daemon=True)
    process.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, accepted
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the SMTP sink did not listen on port {port} within 30 s")


def queue_notices(n: int) -> float:
    """Empty the outbox and queue `n` partner notices as one transaction would; seconds taken."""
    from sqlalchemy import delete

    from models import OutboxEmail
    from models.db import session_scope
    from tasks.mail import queue_email

    with session_scope() as session:
        session.exec(delete(OutboxEmail))  # type: ignore[call-overload]
    started = time.perf_counter()
    with session_scope() as session:
        for i in range(n):
            queue_email(
                session=session,
                key=f"bench:{n}:{i}",
                to=f"partner.{i}@example.net",
                template="partner_notice",
                context=NOTICE,
            )
    return time.perf_counter() - started


async def improve_send() -> tuple[float, dict[str, int]]:
    """send_due until nothing is due; seconds taken and the totals."""
    from tasks.outbox import send_due

    totals = {"sent": 0, "deferred": 0, "failed": 0, "skipped": 0, "runs": 0}
    started = time.perf_counter()
    while True:
        counts = await send_due()
        if not any(counts.values()):
            break
        totals["runs"] += 1
        for what, n in counts.items():
            totals[what] += n
    return time.perf_counter() - started, totals


def outbox_rows() -> list[Any]:
    from sqlmodel import Session, select

    from models import OutboxEmail
    from models.db import get_engine

    with Session(get_engine()) as session:
        return list(session.exec(select(OutboxEmail).order_by(OutboxEmail.id)).all())  # type: ignore[arg-type]


async def raw_send(rows: list[Any]) -> tuple[float, float, list[bytes]]:
    """Each row rendered (tasks.mail.encode_message, the outbox's own) and sent, one after
    another over one aiosmtplib connection, as a hand-written script would: no database, no
    bookkeeping. Seconds taken, seconds of them spent sending, and the messages."""
    import aiosmtplib

    from improve.settings import settings
    from tasks.mail import encode_message

    messages, sending = [], 0.0
    started = time.perf_counter()
    smtp = aiosmtplib.SMTP(hostname=settings.smtp_host, port=settings.smtp_port)
    await smtp.connect()
    for row in rows:
        message = encode_message(row)
        messages.append(message)
        sent = time.perf_counter()
        await smtp.sendmail("improve@example.org", [row.recipient], message)
        sending += time.perf_counter() - sent
    await smtp.quit()
    return time.perf_counter() - started, sending, messages


async def prefect_email_send(wires: list[bytes]) -> float:
    """prefect-email's task, one run per message, in one flow; seconds taken (after a warm-up)."""
    from email import message_from_bytes, policy

    from prefect import flow
    from prefect_email import EmailServerCredentials, SMTPType, email_send_message

    from improve.settings import settings

    credentials = EmailServerCredentials(
        smtp_server=settings.smtp_host, smtp_port=settings.smtp_port, smtp_type=SMTPType.INSECURE
    )
    parts = [
        (
            str(m["Subject"]),
            m.get_body(("html",)).get_content(),
            m.get_body(("plain",)).get_content(),
            str(m["To"]),
        )
        for m in (
            message_from_bytes(w.replace(b"\r\n", b"\n"), policy=policy.default) for w in wires
        )
    ]

    # The messages reach the flow by closure: as parameters they would be stored with the run,
    # and the server refuses parameters over 512 kB.
    batch: list[tuple[str, str, str, str]] = []

    @flow(name="prefect-email-bench")
    async def send_each() -> None:
        for subject, html, text, to in batch:
            await email_send_message(
                subject=subject,
                msg=html,
                msg_plain=text,
                email_to=to,
                email_from="improve@example.org",
                email_server_credentials=credentials,
            )

    batch[:] = parts[:1]
    await send_each()  # warm up: the first flow run of a process pays for imports
    batch[:] = parts
    started = time.perf_counter()
    await send_each()
    return time.perf_counter() - started


def delivered(accepted: Any, before: int, expected: int, what: str) -> int:
    now = int(accepted.value)
    if now - before != expected:
        raise RuntimeError(f"{what}: the sink accepted {now - before} of {expected} messages")
    return now


async def measure(counts: list[int], prefect_sample: int) -> None:
    data = private_environment()

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from improve.settings import settings
    from improve.stack import Stack, free_port
    from models.db import init_db

    init_db()
    sink, accepted = start_sink(settings.smtp_port)
    stack = Stack(
        prefect_home=data / "prefect", logs=data / "logs", prefect_port=free_port(), ui=False
    )
    stack.start_prefect()
    print(
        f"SMTP sink in process {sink.pid}; pool of {settings.smtp_pool_size} connections, "
        f"{settings.outbox_batch_limit} emails a run; "
        f"{settings.effective_database_url.split(':')[0]}"
    )
    try:
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            for n in counts:
                queued = queue_notices(n)
                before = int(accepted.value)
                improve_seconds, totals = await improve_send()
                before = delivered(accepted, before, n, "improve")
                raw_seconds, raw_sending, messages = await raw_send(outbox_rows())
                before = delivered(accepted, before, n, "raw aiosmtplib")
                sample = messages[: min(n, prefect_sample)]
                prefect_seconds = await prefect_email_send(sample)
                delivered(accepted, before, len(sample) + 1, "prefect-email")

                improve_rate = n / improve_seconds
                raw_rate = n / raw_seconds
                prefect_rate = len(sample) / prefect_seconds
                print()
                print(f"{n:,} templated notices (queued in {queued:.1f} s, not counted):")
                print(
                    f"  improve send_due         {improve_rate:8.0f} msg/s   "
                    f"({improve_seconds:.1f} s, {totals['runs']} run(s), {totals['sent']:,} sent)"
                )
                print(
                    f"  raw aiosmtplib, 1 conn   {raw_rate:8.0f} msg/s   ({raw_seconds:.1f} s, "
                    f"rendering included; sending alone {n / raw_sending:.0f} msg/s)"
                )
                sampled = "" if len(sample) == n else f"a sample of {len(sample):,}"
                print(
                    f"  prefect-email, task/msg  {prefect_rate:8.0f} msg/s   "
                    f"({prefect_seconds:.1f} s{', ' + sampled if sampled else ''})"
                )
                print(
                    f"  improve / prefect-email {improve_rate / prefect_rate:6.1f}×   "
                    f"improve / raw {improve_rate / raw_rate:6.2f}×"
                )
    finally:
        stack.stop()
        sink.terminate()
        sink.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--prefect-sample", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(measure(arguments.messages, arguments.prefect_sample))


if __name__ == "__main__":
    main()
