async def test_signed_event_reaches_sink(make_router, basic_config):
    router = await make_router(basic_config)
    status, body = await router.post("demo", {"type": "invoice.paid", "data": {"id": 1}})
    assert status == 200, body
    assert body["status"] == "accepted"
    events = await router.recorder.wait_for("recorder", 1)
    assert events[0].id == body["event_id"]
    assert events[0].type == "invoice.paid"
