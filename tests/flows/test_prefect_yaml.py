"""prefect.yaml: what `improve up` serves and `prefect deploy --all` sends to a work pool."""

from datetime import timedelta

from improve import events
from improve.settings import settings
from improve.stack import deployment_specs, load_deployments

FROM_EVENT = {"improvement_id": "{{ event.resource['improve.improvement-id'] | int }}"}


def test_every_flow_module_is_a_deployment_started_by_its_events() -> None:
    deployments = {d.name: d for d in load_deployments()}

    assert set(deployments) == {
        "route-improvement", "advance-improvement", "announce-impact", "sweep", "service-review",
        "impact-digest",
    }  # fmt: skip
    started_by = {
        name: {event for trigger in d.triggers for event in trigger.expect}
        for name, d in deployments.items()
    }
    assert started_by == {
        "route-improvement": {events.SUBMITTED, events.CASE_UPDATE_OVERDUE},
        "advance-improvement": {
            events.APPROVAL_DECIDED,
            events.ACTION_COMPLETED,
            events.ALTERNATIVE_ACCEPTED,
        },
        "announce-impact": {events.COMPLETED},
        "sweep": set(),
        "service-review": set(),
        "impact-digest": set(),
    }
    for name, deployment in deployments.items():
        module = name.replace("-", "_")
        assert deployment.entrypoint == f"flows/{module}.py:{module}"
        assert deployment.concurrency_limit
        for trigger in deployment.triggers:
            assert trigger.match.root == {"prefect.resource.id": "improve.improvement.*"}
            assert trigger.parameters == FROM_EVENT


def test_the_sweep_runs_every_five_minutes_one_at_a_time() -> None:
    (sweep,) = [d for d in load_deployments() if d.name == "sweep"]

    (schedule,) = sweep.schedules
    assert schedule.schedule.interval == timedelta(minutes=5)
    assert sweep.concurrency_limit == 1
    assert sweep.concurrency_options.collision_strategy == "CANCEL_NEW"


def test_the_service_review_runs_daily_in_the_organisations_time_zone_one_at_a_time() -> None:
    (review,) = [d for d in load_deployments() if d.name == "service-review"]

    (schedule,) = review.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 6 * * *", settings.timezone)
    assert review.concurrency_limit == 1
    assert review.concurrency_options.collision_strategy == "CANCEL_NEW"


def test_the_impact_digest_runs_on_monday_mornings_in_the_organisations_time_zone() -> None:
    (digest,) = [d for d in load_deployments() if d.name == "impact-digest"]

    (schedule,) = digest.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 7 * * 1", settings.timezone)
    assert digest.concurrency_limit == 1
    assert digest.concurrency_options.collision_strategy == "CANCEL_NEW"


def test_each_deployment_names_the_process_work_pool_for_prefect_deploy() -> None:
    assert {spec["work_pool"]["name"] for spec in deployment_specs()} == {"improve"}
