"""The example pipelines on a real broker: every stage an agent, results routed to the output
topics (that ``eval`` decides the same, field by field: test_eval_matches_kafka.py)."""

from __future__ import annotations

from harness import by_id, offline_decisions, read_outcomes, samples

from stream_engine.runtime.cluster.topics import pipeline_topics

KIND_OF_STATUS = {
    "approved": "decisions",
    "completed": "decisions",
    "rejected": "rejected",
    "review": "review",
    "dead_letter": "dlq",
}


async def test_every_output_message_is_keyed_by_record_id_and_carries_all_results_so_far(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline()
    records = samples()[:40]
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many(records)
    outcomes = await read_outcomes(kafka, pipeline_topics(pipeline), len(records))

    stages = pipeline.plan.active_stages
    order = [s.name for s in stages]
    for outcome in outcomes:
        assert outcome.record_id == outcome.key
        if outcome.kind == "dlq":
            continue
        body = outcome.body
        visited = stages[: order.index(body["decided_by_stage"]) + 1]
        assert set(body["results"]) == {rule.rule_id for stage in visited for rule in stage.rules}
        assert [a["stage"] for a in body["audit"]] == [s.name for s in visited]
        assert body["config_hash"] == pipeline.effective.config_hash


async def test_seed_scenarios_hold_on_kafka(make_pipeline, kafka, running, client_for):
    pipeline = make_pipeline()
    decided = await offline_decisions(make_pipeline(), samples())
    approved = next(r for r in samples() if decided[r["application_id"]]["status"] == "approved")
    incomplete = {k: v for k, v in approved.items() if k not in ("ssn", "date_of_birth")}
    incomplete["application_id"] = "SEED-INCOMPLETE"
    minor = approved | {"application_id": "SEED-MINOR", "date_of_birth": "2015-01-01"}
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many([approved, incomplete, minor])
    outcomes = by_id(await read_outcomes(kafka, pipeline_topics(pipeline), 3))

    good = outcomes[approved["application_id"]]
    assert (good.kind, good.status) == ("decisions", "approved")
    missing = outcomes["SEED-INCOMPLETE"]
    assert (missing.kind, missing.stage) == ("rejected", "data_quality")
    assert "required_personal_info" in missing.failed_rules["data_quality"]
    assert "compliance" not in missing.body["results"]
    young = outcomes["SEED-MINOR"]
    assert (young.kind, young.stage) == ("rejected", "business_rules")
    assert young.failed_rules["business_rules"]


async def test_lead_enrichment_completes_do_not_call_leads_early_and_reviews_over_budget(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline("lead_enrichment")
    records = samples("lead_enrichment")
    expected = await offline_decisions(make_pipeline("lead_enrichment"), records)
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many(records)
    outcomes = by_id(await read_outcomes(kafka, pipeline_topics(pipeline), len(records)))

    completed = [i for i, d in expected.items() if d["status"] == "completed"]
    review = [i for i, d in expected.items() if d["status"] == "review"]
    assert completed
    assert review
    for record_id in completed:
        got = outcomes[record_id]
        assert (got.kind, got.status) == ("decisions", "completed")
        assert got.stage == expected[record_id]["decided_by_stage"]
    for record_id in review:
        assert (outcomes[record_id].kind, outcomes[record_id].status) == ("review", "review")
