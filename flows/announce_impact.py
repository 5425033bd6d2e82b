"""announce-impact: a completed improvement is told to the people it touched."""

from prefect import flow

from flows.steps import announce_completion, label_run, publish_impact, run_name, send_outbox


@flow(name="announce-impact", flow_run_name=run_name("announce"))
async def announce_impact(improvement_id: int) -> dict[str, int]:
    """Email customers, partners and the submitter what changed; publish the impact."""
    await label_run(improvement_id)
    told = await announce_completion(improvement_id)
    await send_outbox()
    await publish_impact(improvement_id, told)
    return told
