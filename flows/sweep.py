"""sweep: the scheduled safety net that makes events an optimisation, not a dependency."""

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import State

from flows.advance_improvement import advance_improvement
from flows.announce_impact import announce_impact
from flows.route_improvement import route_improvement
from flows.steps import (
    ask_again,
    complete_improvement,
    emit_completed,
    find_cases_to_settle,
    find_due_automatic_steps,
    find_lost_decisions,
    find_ready_to_complete,
    find_stranded_approvals,
    find_stuck,
    find_unannounced,
    find_unplanned,
    find_unrouted,
    raise_overdue_updates,
    remind_and_escalate,
    remind_and_escalate_actions,
    run_automatic_step,
    send_outbox,
    settle_case,
)
from improve.errors import ImproveError
from models.db import utcnow


class SweepIncomplete(ImproveError):
    """One or more sweep steps failed; every other step still ran and the outbox was sent."""


def _sweep_name() -> str:
    return f"sweep · {utcnow():%Y-%m-%d %H:%M}"


@flow(name="sweep", flow_run_name=_sweep_name)
async def sweep() -> dict[str, int]:
    """Remind, escalate and expire; move on whatever lost its event; send what is due.

    Each step runs on its own: one that fails is logged, counted as `<step>_failed` and reported,
    and the steps after it still run, the outbox always last. The run then fails, naming the
    failed steps, so that the Prefect UI and its automations show it; the report artifact says
    what every step did.
    """
    report = SweepReport()
    async with report.step("remind_and_escalate", "approval requests reminded, escalated, expired"):
        report.add(await remind_and_escalate())
    async with report.step("follow_up_actions", "action items reminded, renewed, escalated"):
        report.add(await remind_and_escalate_actions())
    async with report.step("ask_again", "lapsed approvals asked again") as step:
        for improvement_id in await find_stranded_approvals():
            state = await ask_again(improvement_id, return_state=True)
            if not state.is_completed() or await state.result():  # False: moved on meanwhile
                step.count("asked_again", state)
    async with report.step("advance", "lost decisions acted on") as step:
        for improvement_id in await find_lost_decisions():
            step.count("advanced", await advance_improvement(improvement_id, return_state=True))
    async with report.step("offer", "cases whose alternatives were offered or returned") as step:
        for case_id in await find_cases_to_settle():
            state = await settle_case(case_id, return_state=True)
            if not state.is_completed() or await state.result() in ("offered", "returned"):
                step.count("settled", state)
    async with report.step("plan", "approved improvements planned") as step:
        for improvement_id in await find_unplanned():
            step.count("planned", await advance_improvement(improvement_id, return_state=True))
    async with report.step("overdue_updates", "overdue customer updates raised, escalated"):
        report.add(await raise_overdue_updates())
    async with report.step("route", "submitted improvements routed") as step:
        for improvement_id in await find_unrouted():
            step.count("routed", await route_improvement(improvement_id, return_state=True))
    async with report.step("automatic_steps", "automatic steps carried out") as step:
        for action_id in await find_due_automatic_steps():
            step.count("automatic_steps", await run_automatic_step(action_id, return_state=True))
    async with report.step("complete", "finished plans completed") as step:
        for improvement_id in await find_ready_to_complete():
            state = await complete_improvement(improvement_id, return_state=True)
            if not state.is_completed():
                step.count("completed", state)
            elif await state.result():
                await emit_completed(improvement_id)
                step.count("completed", state)
    async with report.step("announce", "completions announced") as step:
        for improvement_id in await find_unannounced():
            step.count("announced", await announce_impact(improvement_id, return_state=True))
    async with report.step("stuck", "improvements still stuck (see the dashboard)") as step:
        stuck = await find_stuck()
        report.add({"stuck": len(stuck)})
        step.notes.extend(stuck)
    async with report.step("send_outbox", "emails sent, deferred, failed"):
        report.add(await send_outbox())
    return await report.finish()


@dataclass
class StepReport:
    """One row of the sweep's report: what the step does, what it counted, what went wrong."""

    name: str
    does: str
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, what: str, state: State) -> None:
        """One recovery failing must not stop the others: count it, the next sweep tries again."""
        if state.is_completed():
            self.counts[what] += 1
        else:
            self.counts[f"{what}_failed"] += 1
            self.errors.append(state.message or str(state.type))
            get_run_logger().error("Sweep step %s: %s", self.name, self.errors[-1])


@dataclass
class SweepReport:
    """The steps of one sweep, each isolated: a failure is caught, logged and reported."""

    steps: list[StepReport] = field(default_factory=list)

    @asynccontextmanager
    async def step(self, name: str, does: str) -> AsyncIterator[StepReport]:
        row = StepReport(name, does)
        self.steps.append(row)
        try:
            yield row
        except Exception as error:  # the point: the next steps still run
            row.counts[f"{name}_failed"] += 1
            row.errors.append(f"{type(error).__name__}: {error}")
            get_run_logger().exception("Sweep step %s failed: %s", name, error)

    def add(self, counts: dict[str, int]) -> None:
        self.steps[-1].counts.update(counts)

    @property
    def summary(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for row in self.steps:
            total.update(row.counts)
        return dict(total)

    @property
    def failed(self) -> list[str]:
        return [row.name for row in self.steps if row.errors]

    def markdown(self) -> str:
        lines = ["| step | what it does | how many | error |", "|---|---|---|---|"]
        for row in self.steps:
            counted = ", ".join(f"{k} {v}" for k, v in sorted(row.counts.items()) if v) or "none"
            error = "<br>".join(_cell(e) for e in row.errors) or "—"
            lines.append(f"| {row.name} | {row.does} | {counted} | {error} |")
        notes = [note for row in self.steps for note in row.notes]
        if notes:
            lines += ["", "Stuck:", "", *(f"- {_cell(note)}" for note in notes)]
        return "\n".join(lines)

    async def finish(self) -> dict[str, int]:
        """Log and publish the report; fail the run if any step failed, after all have run."""
        logger = get_run_logger()
        logger.info("Swept: %s", self.summary)
        try:
            await acreate_markdown_artifact(
                key="sweep-report", markdown=self.markdown(), description="What the sweep did"
            )
        except Exception:  # a report that cannot be stored must not undo the sweep
            logger.exception("The sweep report could not be stored as an artifact")
        if self.failed:
            raise SweepIncomplete(
                f"Sweep steps failed: {', '.join(self.failed)}; every other step ran. "
                f"Swept: {self.summary}"
            )
        return self.summary


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")[:500]
