import pytest
import torch

from oracle.capture import capture, hidden_at_layers
from oracle.errors import OracleInputError, UnsupportedArchitectureError
from oracle.hooks import count_hooks
from oracle.layers import get_decoder_layers
from tests.helpers import ALL_FAMILIES, MESSAGES, build_tiny_model

PROMPTS = ["Hello! How are you today?", "Tell me about the stars and the sea.", "Hi"]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_capture_equals_hidden_states(family):
    model, tok = build_tiny_model(family)
    n = len(get_decoder_layers(model))
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = model(input_ids=ids, output_hidden_states=True).hidden_states
    caps = capture(model, tok, [PROMPTS[0]], layers=list(range(n - 1)), positions="all")
    acts = caps[0].activations  # (L, P, D)
    for i in range(n - 1):
        torch.testing.assert_close(acts[i], ref[i + 1][0].float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma"])
def test_last_block_is_raw_output_not_final_norm(family):
    model, tok = build_tiny_model(family)
    n = len(get_decoder_layers(model))
    ids = tok(PROMPTS[1], return_tensors="pt")["input_ids"]
    raw = hidden_at_layers(model, ids, None, [n - 1])[n - 1]
    with torch.no_grad():
        ref = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    # transformers applies the final norm to hidden_states[-1]; capture returns the block output.
    assert not torch.allclose(raw, ref, atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "qwen3", "gpt2", "gemma"])
def test_batched_equals_unbatched(family):
    model, tok = build_tiny_model(family)
    batched = capture(model, tok, PROMPTS, layers=[0, 2], positions="all", batch_size=3)
    for prompt, b in zip(PROMPTS, batched, strict=True):
        single = capture(model, tok, [prompt], layers=[0, 2], positions="all", batch_size=1)[0]
        assert single.positions == b.positions
        torch.testing.assert_close(single.activations, b.activations, atol=1e-5, rtol=1e-5)


def test_capture_leaves_no_hooks_and_stops_early(tiny_llama):
    model, tok = tiny_llama
    before = count_hooks(model)
    calls = []
    last = get_decoder_layers(model)[-1]
    handle = last.register_forward_hook(lambda *a: calls.append(1))
    try:
        capture(model, tok, ["Hi there"], layers=[1])
    finally:
        handle.remove()
    assert calls == []  # the forward stopped after block 1
    assert count_hooks(model) == before


def test_capture_errors(tiny_llama):
    model, tok = tiny_llama
    with pytest.raises(OracleInputError, match="out of range"):
        capture(model, tok, ["Hi"], layers=[4])
    with pytest.raises(OracleInputError, match="out of range"):
        capture(model, tok, ["Hi"], layers=[0], positions="indices:99")
    with pytest.raises(OracleInputError, match="empty"):
        capture(model, tok, ["   "], layers=[0])
    with pytest.raises(OracleInputError, match="at least one layer"):
        capture(model, tok, ["Hi"], layers=[])
    with pytest.raises(OracleInputError, match="more than the limit"):
        capture(model, tok, [MESSAGES], layers=[0], max_tokens=5)


def test_unknown_architecture_names_the_class():
    class Weird(torch.nn.Module):
        config = type("C", (), {"model_type": "weird"})()

    with pytest.raises(UnsupportedArchitectureError, match="Weird"):
        get_decoder_layers(Weird())
