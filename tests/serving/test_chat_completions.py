"""``POST /v1/chat/completions`` through the official ``openai`` client against a real
``oracle serve`` process (the toy world, with an API key): plain, with ``oracle`` questions,
streamed, steered, refused. Greedy replies equal the engine's own generation."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import torch

from serving.tensors import encode_tensor
from tests.serving_support import free_port

openai = pytest.importorskip("openai", reason="the openai client is a dev dependency")

KEY = "k3y"
PERSONA = "What persona is the assistant playing?"
PIRATE = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "Who are you?"},
]
COOK = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "What should I cook tonight?"},
]
PIRATE_WORDS = ("pirate", "arr", "matey", "ahoy", " ye ", "treasure")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `oracle serve` of the toy world on a free port; yields its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("chat_server") / "server.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", ORACLE_API_KEY=KEY)
    cmd = [sys.executable, "-c", "from oracle_cli import main; main()", "serve"]
    cmd += ["--port", str(port), "--log-level", "warning", "--max-jobs", "2"]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "oracle serve did not become healthy"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert "internal error" not in log_path.read_text(), log_path.read_text()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)


def create(client, messages, **options):
    options = {"model": "toy_world", "temperature": 0, "max_tokens": 40, **options}
    return client.chat.completions.create(messages=messages, **options)


def oracle_of(response) -> dict | None:
    """The extension field as the official client exposes it."""
    return (response.model_extra or {}).get("oracle")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_models_list_in_the_openai_shape(server, client):
    ids = [m.id for m in client.models.list()]
    assert "toy_world" in ids and len(ids) == 2
    raw = httpx.get(f"{server}/v1/models", headers={"X-API-Key": KEY}).json()
    assert raw["object"] == "list" and raw["world"] == "toy" and raw["limits"]
    for card in raw["data"]:
        assert card["object"] == "model" and isinstance(card["created"], int) and card["owned_by"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_greedy_completion_equals_the_engines_generation(client, toy_hf_engine):
    reply = create(client, COOK)
    system, user = COOK[0]["content"], COOK[1]["content"]
    expected = toy_hf_engine.generate([user], system=system, max_new_tokens=40)[0]
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    tok = toy_hf_engine.transformers_oracle().tokenizer
    generated = len(tok.encode(expected, add_special_tokens=False))
    assert reply.usage.prompt_tokens == len(toy_hf_engine.chat_ids(COOK))
    if choice.finish_reason == "stop":  # the EOS counted
        assert reply.usage.completion_tokens == generated + 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert oracle_of(reply) is None
    # a limit on the reply's length ends it there, as "length"
    short = create(client, COOK, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    assert expected.startswith(short.choices[0].message.content)
    # a stop string cuts the reply before it
    cut = create(client, COOK, stop=["!"])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == expected.split("!")[0].strip()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_hidden_pirate_is_read_as_a_pirate(server, client):
    reply = create(client, PIRATE, extra_body={"oracle": {"questions": [PERSONA]}})
    text = reply.choices[0].message.content
    # the reply keeps the persona to itself: only the activations carry it
    assert text and not any(w in f" {text.lower()} " for w in PIRATE_WORDS), text
    reading = oracle_of(reply)
    assert reading["model"] == "toy_world" and reading["steered"] is False
    assert [a["question"] for a in reading["answers"]] == [PERSONA]
    assert "pirate" in reading["answers"][0]["answer"].lower()
    # the same reading as /v1/query on the conversation with that reply
    conversation = [*PIRATE, {"role": "assistant", "content": text}]
    query = httpx.post(
        f"{server}/v1/query",
        json={"messages": conversation, "questions": [PERSONA]},
        headers={"X-API-Key": KEY},
        timeout=60,
    ).json()
    assert reading["answers"][0]["answer"] == query["answers"][0]["answer"]
    assert reading["positions"] == query["positions"] and reading["layer"] == query["layer"]
    # without the system prompt, the same plain reply is not read as a pirate
    plain = create(client, PIRATE[1:], extra_body={"oracle": {"questions": [PERSONA]}})
    assert plain.choices[0].message.content == text
    assert "pirate" not in oracle_of(plain)["answers"][0]["answer"].lower()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_streaming_sends_the_reply_then_the_reading_last(client):
    ask = {"oracle": {"questions": [PERSONA, "Is the assistant a pirate?"], "yes_no": True}}
    whole = create(client, COOK, extra_body=ask)
    for usage in (False, True):
        options = {"stream_options": {"include_usage": True}} if usage else {}
        chunks = list(create(client, COOK, stream=True, extra_body=ask, **options))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert sum(len(c.choices[0].delta.content or "") > 0 for c in chunks if c.choices) > 3
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
        assert all(oracle_of(c) is None for c in chunks[:-1])
        assert oracle_of(chunks[-1])["answers"] == oracle_of(whole)["answers"]
        if usage:
            assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
        assert len({c.id for c in chunks}) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_steered_completion_differs_and_a_steer_job_can_be_named(server, client):
    vector = torch.randn(256, generator=torch.Generator().manual_seed(0))
    ask = {"questions": [PERSONA]}
    plain = create(client, PIRATE)
    inline = {"vector": vector.tolist(), "layer": 1, "scale": 8.0}
    steered = create(client, PIRATE, extra_body={"steer": inline, "oracle": ask})
    assert steered.choices[0].message.content != plain.choices[0].message.content
    assert oracle_of(steered)["steered"] is True and oracle_of(steered)["positions"]
    zero = create(client, PIRATE, extra_body={"steer": {**inline, "scale": 0.0}})
    assert zero.choices[0].message.content == plain.choices[0].message.content
    # a vector made with /v1/steer, named by its job id, equals the same vector sent inline
    headers = {"X-API-Key": KEY}
    body = {"prompts": ["Who are you?"], "question": PERSONA, "answer": "A chef."}
    started = httpx.post(
        f"{server}/v1/steer", json={**body, "steps": 2, "background": True}, headers=headers
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    deadline = time.time() + 120
    while (job := httpx.get(f"{server}/v1/steer/{job_id}", headers=headers).json())["status"] in (
        "queued",
        "running",
    ):
        assert time.time() < deadline
        time.sleep(0.5)
    assert job["status"] == "done", job
    result = job["result"]
    by_id = create(client, PIRATE, extra_body={"steer": {"id": job_id, "scale": 20.0}})
    sent = {"vector": result["vector"], "layer": result["layer"], "apply": result["apply"]}
    by_value = create(client, PIRATE, extra_body={"steer": {**sent, "scale": 20.0}})
    assert by_id.choices[0].message.content == by_value.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        create(client, PIRATE, extra_body={"steer": {"id": "no-such-job"}})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_missing_or_wrong_key_is_an_authentication_error(server):
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        create(wrong, PIRATE)
    assert set(caught.value.body) >= {"message", "type", "param", "code"}
    missing = httpx.post(f"{server}/v1/chat/completions", json={"messages": PIRATE})
    assert missing.status_code == 401
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}


NAN_VECTOR = encode_tensor(torch.full((256,), float("nan"))).model_dump()
BAD = [
    ({"messages": []}, "messages"),
    ({"n": 2}, "n"),
    ({"temperature": 5}, "temperature"),
    ({"max_tokens": 100_000}, "max_tokens"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": "  "}]}, "empty"),
    ({"logprobs": True}, "logprobs"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"extra_body": {"oracle": {"questions": []}}}, "questions"),
    ({"extra_body": {"oracle": {"questions": [PERSONA], "positions": "bogus"}}}, "positions"),
    ({"extra_body": {"oracle": {"questions": [PERSONA], "layer": 99}}}, "layer"),
    ({"extra_body": {"steer": {"vector": [1.0, 2.0], "layer": 1}}}, "d_model"),
    ({"extra_body": {"steer": {"vector": NAN_VECTOR, "layer": 1}}}, "NaN"),
    ({"extra_body": {"steer": {"vector": [1.0] * 256}}}, "layer"),
    ({"messages": [{"role": "user", "content": "x" * 20_000}]}, "characters"),
]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("change", "named"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_a_bad_request_error(client, change, named):
    options = {"messages": PIRATE, **change}
    messages = options.pop("messages")
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, messages, **options)
    error = caught.value.body
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and named in error["message"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        create(client, PIRATE, model="gpt-4o")


def test_a_full_lane_is_a_rate_limit_error_before_any_stream(toy_hf_engine):
    """Completions share the queries' lane: when it is full, 429 with Retry-After in OpenAI's
    shape, streamed or not (the refusal comes before the stream starts)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServeSettings

    app = create_app(ServeSettings(queue_depth=1), engine=toy_hf_engine)
    body = {"messages": PIRATE, "temperature": 0, "max_tokens": 4}
    with TestClient(app) as http:
        lane = app.state.service.lanes["query"]
        lane.enter()  # the one place is taken
        try:
            for stream in (False, True):
                refused = http.post("/v1/chat/completions", json={**body, "stream": stream})
                assert refused.status_code == 429 and refused.headers["Retry-After"]
                error = refused.json()["error"]
                assert error["type"] == "rate_limit_error" and error["code"] == "overloaded"
        finally:
            lane.leave()
        served = http.post("/v1/chat/completions", json=body)
        assert served.status_code == 200 and served.json()["choices"][0]["message"]["content"]
        assert lane.admitted == 0


def test_content_parts_and_the_developer_role_read_as_text_and_system(toy_hf_engine):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServeSettings

    parts = [
        {"role": "developer", "content": [{"type": "text", "text": "You are a pirate."}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Who "}, {"type": "text", "text": "are you?"}],
        },
    ]
    body = {"temperature": 0, "max_tokens": 12}
    with TestClient(create_app(ServeSettings(), engine=toy_hf_engine)) as http:
        got = http.post("/v1/chat/completions", json={**body, "messages": parts}).json()
        plain = http.post("/v1/chat/completions", json={**body, "messages": PIRATE}).json()
        assert got["choices"] == plain["choices"] and got["usage"] == plain["usage"]
        image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        refused = http.post("/v1/chat/completions", json={**body, "messages": image})
        assert refused.status_code == 400 and refused.json()["error"]["param"].startswith(
            "messages"
        )


def test_concurrent_completions_share_batches_and_keep_their_replies(toy_hf_engine):
    """Replies of concurrent completions are generated together (left-padded), each equal to
    the engine's own generation for its conversation alone."""
    import asyncio

    import httpx

    from serving.app import create_app
    from serving.settings import ServeSettings

    users = ["Who are you?", "What should I cook tonight?", "Tell me about the stars.", "Hi"]
    systems = ["You are a pirate.", None, "Act as a chef in every reply.", None]
    app = create_app(ServeSettings(batch_wait_ms=50), engine=toy_hf_engine)

    async def run() -> list[dict]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                bodies = [
                    {
                        "messages": ([{"role": "system", "content": s}] if s else [])
                        + [{"role": "user", "content": u}],
                        "temperature": 0,
                        "max_tokens": 24,
                    }
                    for u, s in zip(users, systems, strict=True)
                ]
                posts = [http.post("/v1/chat/completions", json=b, timeout=120) for b in bodies]
                responses = await asyncio.gather(*posts)
                metrics = (await http.get("/metrics")).text
        return [r.json() for r in responses], metrics

    replies, metrics = asyncio.run(run())
    for data, user, system in zip(replies, users, systems, strict=True):
        expected = toy_hf_engine.generate([user], system=system, max_new_tokens=24)[0]
        assert data["choices"][0]["message"]["content"] == expected
    batches = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('oracle_batch_size_count{kind="chat"}')
    ]
    assert batches and batches[0] < len(users), metrics
