"""Orchestration overhead per improvement: route + advance as Prefect flows, against the same work
done by plain calls, and against bare Prefect flows with as many no-op tasks, in the same run.

For each of N improvements, interleaved so that drift hits all three alike:
  work   the steps of route-improvement and advance-improvement called as plain functions
         (the same sessions, database writes and SMTP sends, no Prefect);
  flows  route_improvement and advance_improvement called as flows against a Prefect server;
  bare   two flows with the same number of tasks (2 and 5) that do nothing.
The approver's decision between route and advance is made untimed. The flows run in this
process, as the served runs do in theirs; a served run's process start is not included (see
bench/decision_latency.py for that).

    .venv/bin/python -m bench.orchestration_overhead [--improvements 20]
"""

import argparse
import asyncio
import time
from typing import Any

from bench.common import organisation, private_environment, submit, summary


def build_bare_flows() -> tuple[Any, Any]:
    """Flows shaped like route (2 tasks) and advance (5 tasks) whose tasks do nothing."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE, persist_result=False)
    async def nothing(step: int) -> int:
        return step

    @flow(name="bare-route")
    async def bare_route() -> None:
        for step in range(2):
            await nothing(step)

    @flow(name="bare-advance")
    async def bare_advance() -> None:
        for step in range(5):
            await nothing(step)

    return bare_route, bare_advance


async def plain_route_and_advance(improvement_id: int, decide: Any) -> float:
    """The steps of both flows, for one improvement, as plain calls; seconds taken (untimed
    decision in between)."""
    from models import Channel
    from models.db import session_scope
    from tasks import approvals, automatic, decisions, planning
    from tasks.outbox import send_due

    started = time.perf_counter()
    with session_scope() as session:
        approvals.route_improvement(
            session=session, improvement_id=improvement_id, actor="bench", channel=Channel.flow
        )
    await send_due()
    elapsed = time.perf_counter() - started
    decide(improvement_id)
    started = time.perf_counter()
    with session_scope() as session:
        outcome = decisions.advance_after_decision(
            session=session, improvement_id=improvement_id, actor="bench"
        )
    if outcome == "approved":
        with session_scope() as session:
            planning.plan_actions(session=session, improvement_id=improvement_id, actor="bench")
    with session_scope() as session:
        steps = automatic.open_automatic_steps(session=session, improvement_id=improvement_id)
    for action_id in steps:
        with session_scope() as session:
            automatic.run_automatic_step(session=session, action_id=action_id)
    with session_scope() as session:
        planning.complete_improvement(session=session, improvement_id=improvement_id, actor="bench")
    await send_due()
    return elapsed + time.perf_counter() - started


async def measure(improvements: int) -> None:
    data = private_environment()

    from prefect.settings import PREFECT_API_URL, temporary_settings
    from sqlmodel import select

    from flows.advance_improvement import advance_improvement
    from flows.route_improvement import route_improvement
    from improve.settings import settings
    from improve.sink import start_sink
    from improve.stack import Stack, free_port
    from models import ApprovalRequest, ApprovalStatus, Channel
    from models.db import init_db, session_scope
    from tasks.decisions import record_decision

    init_db()
    with session_scope() as session:
        submitter, _ = organisation(session)
        ids = [submit(session, submitter, n) for n in range(2 * improvements)]

    def decide(improvement_id: int) -> None:
        with session_scope() as session:
            request = session.exec(
                select(ApprovalRequest).where(
                    ApprovalRequest.improvement_id == improvement_id,
                    ApprovalRequest.status == ApprovalStatus.pending,
                )
            ).one()
            assert request.id is not None
            record_decision(
                session=session, approval_id=request.id, approve=True, comment="",
                channel=Channel.email,
            )  # fmt: skip

    sink = start_sink(host="127.0.0.1", port=settings.smtp_port, maildir=data / "mailsink")
    stack = Stack(
        prefect_home=data / "prefect", logs=data / "logs", prefect_port=free_port(), ui=False
    )
    stack.start_prefect()
    bare_route, bare_advance = build_bare_flows()
    work: list[float] = []
    flows: list[float] = []
    bare: list[float] = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            await bare_route()  # warm up: the first flow run of a process pays for imports
            for n in range(improvements):
                plain_id, flow_id = ids[2 * n], ids[2 * n + 1]
                work.append(await plain_route_and_advance(plain_id, decide))

                started = time.perf_counter()
                await route_improvement(flow_id)
                elapsed = time.perf_counter() - started
                decide(flow_id)
                started = time.perf_counter()
                await advance_improvement(flow_id)
                flows.append(elapsed + time.perf_counter() - started)

                started = time.perf_counter()
                await bare_route()
                await bare_advance()
                bare.append(time.perf_counter() - started)
    finally:
        stack.stop()
        sink.stop()

    print()
    print(f"Per improvement, route + advance (2 flows, 7 tasks), {improvements} improvements:")
    print(f"  work, plain calls      {summary(work)}")
    print(f"  work, as Prefect flows {summary(flows)}")
    print(f"  bare flows, no-op      {summary(bare)}")
    overhead = [f - w for f, w in zip(flows, work, strict=True)]
    print(f"  flows minus work       {summary(overhead)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--improvements", type=int, default=20)
    asyncio.run(measure(parser.parse_args().improvements))


if __name__ == "__main__":
    main()
