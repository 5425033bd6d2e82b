"""announce-impact: a completed improvement is told to the people it touched."""

from prefect import flow

from flows.steps import (
    announce_completion,
    is_completed,
    label_run,
    publish_impact,
    run_name,
    send_outbox,
)


@flow(name="announce-impact", flow_run_name=run_name("announce"))
async def announce_impact(improvement_id: int) -> dict[str, int]:
    """Email customers, partners and the submitter what changed; publish the impact."""
    await label_run(improvement_id)
    if not await is_completed(improvement_id):
        # An event about an improvement that is not completed: one sent again after an outage
        # (a Prefect client resends what a lost server never confirmed). Nothing to announce,
        # and nothing went wrong; the sweep announces any completion whose event was lost.
        return {"announced": 0}
    told = await announce_completion(improvement_id)
    await send_outbox()
    await publish_impact(improvement_id, told)
    return told
