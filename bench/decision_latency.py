"""Decision latency: from an approver's POST returning to advance-improvement running.

Runs the `improve up` stack (Prefect server, the deployments of prefect.yaml served, the web app,
the mail sink) in a private folder on free ports, routes N improvements, then approves them one
at a time through their approval links, as an approver would. For each decision it reads, from
the Prefect API, when the advance-improvement run was created (the event's automation fired)
and when it started running, and prints p50 and p95 of both, measured from the POST's return.
Each run is left to finish before the next decision, so the figures are for a quiet stack.

    .venv/bin/python -m bench.decision_latency [--decisions 50]
"""

import argparse
import asyncio
import time
from datetime import datetime
from typing import Any

from bench.common import organisation, private_environment, submit, summary


async def advance_run(client: Any, deployment_id: Any, improvement_id: int) -> Any | None:
    """The advance-improvement run for this improvement, if the event has created it yet."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=10,
    )
    return next((r for r in runs if r.parameters.get("improvement_id") == improvement_id), None)


async def measure(decisions: int) -> None:
    data = private_environment()

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from sqlmodel import select

    from improve.settings import settings
    from improve.sink import start_sink
    from improve.stack import Stack, free_port
    from models import Channel, OutboxEmail
    from models.db import init_db, session_scope, utcnow
    from tasks.approvals import route_improvement

    init_db()
    with session_scope() as session:
        submitter, _ = organisation(session)
        ids = [submit(session, submitter, n) for n in range(decisions)]
    links: dict[int, str] = {}
    with session_scope() as session:
        for improvement_id in ids:
            route_improvement(
                session=session, improvement_id=improvement_id, actor="bench", channel=Channel.cli
            )
        requests = select(OutboxEmail).where(OutboxEmail.template == "approval_request")
        for row in session.exec(requests):
            assert row.improvement_id is not None
            links[row.improvement_id] = str(row.context["url"])

    sink = start_sink(host="127.0.0.1", port=settings.smtp_port, maildir=data / "mailsink")
    stack = Stack(
        prefect_home=data / "prefect", logs=data / "logs",
        prefect_port=free_port(), web_port=free_port(), ui=False,
    )  # fmt: skip
    print(f"Starting the stack in {data} …", flush=True)
    started = time.monotonic()
    stack.start()
    print(f"Stack up in {time.monotonic() - started:.1f} s; {decisions} decisions follow.")
    created: list[float] = []
    running: list[float] = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            async with get_client() as client, httpx.AsyncClient(timeout=30) as web:
                deployment = await client.read_deployment_by_name(
                    "advance-improvement/advance-improvement"
                )
                for n, improvement_id in enumerate(ids, start=1):
                    url = links[improvement_id].replace(settings.base_url, stack.web_url)
                    response = await web.post(url, data={"decision": "approve", "comment": ""})
                    response.raise_for_status()
                    returned = utcnow()
                    run = await wait_for(client, deployment.id, improvement_id, "running")
                    created.append(_seconds(run.created, returned))
                    running.append(_seconds(run.start_time, returned))
                    await wait_for(client, deployment.id, improvement_id, "final")
                    if n % 10 == 0:
                        print(f"  {n} decisions", flush=True)
    finally:
        stack.stop()
        sink.stop()
    print()
    print("decision POST returned → advance-improvement run created (event → automation):")
    print("  " + summary(created))
    print("decision POST returned → advance-improvement run RUNNING:")
    print("  " + summary(running))


async def wait_for(client: Any, deployment_id: Any, improvement_id: int, stage: str) -> Any:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = await advance_run(client, deployment_id, improvement_id)
        if run is not None and run.state is not None:
            if stage == "running" and run.start_time is not None:
                return run
            if stage == "final" and run.state.is_final():
                return run
        await asyncio.sleep(0.1)
    raise SystemExit(f"IMP-{improvement_id}: no {stage} advance-improvement run within 120 s")


def _seconds(at: datetime | None, since: datetime) -> float:
    assert at is not None
    return (at - since).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50)
    asyncio.run(measure(parser.parse_args().decisions))


if __name__ == "__main__":
    main()
