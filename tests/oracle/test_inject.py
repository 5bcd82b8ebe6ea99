import pytest
import torch

from oracle.capture import hidden_at_layers
from oracle.errors import OracleInputError
from oracle.hooks import count_hooks, hooks
from oracle.inject import InjectionSpec, inject, site_module
from oracle.layers import get_embedding
from oracle.prompts import build_oracle_prompt
from tests.helpers import build_tiny_model

SITES = ["embedding", "layer:0", "layer:1", "layer:2"]


def _prompt(tok, n=3):
    p = build_oracle_prompt(tok, "What persona is the assistant playing?", n, layer=1)
    return torch.tensor([p.input_ids]), p.placeholder_positions


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("family", ["llama", "qwen3", "gpt2", "gemma"])
@pytest.mark.parametrize("site", SITES)
def test_coefficient_zero_changes_nothing(family, site):
    model, tok = build_tiny_model(family)
    ids, pos = _prompt(tok)
    vec = torch.randn(
        len(pos), model.config.hidden_size if hasattr(model.config, "hidden_size") else 64
    )
    base = _logits(model, ids)
    with inject(model, InjectionSpec(site, "add", 0.0), [pos], [vec], ids.shape[1]):
        same = _logits(model, ids)
    torch.testing.assert_close(base, same, atol=0, rtol=0)
    with inject(model, InjectionSpec(site, "add", 1.0), [pos], [vec], ids.shape[1]):
        changed = _logits(model, ids)
    assert not torch.allclose(base[0, pos[0] :], changed[0, pos[0] :])


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("mode", ["add", "replace"])
def test_nothing_changes_before_first_placeholder(tiny_llama, site, mode):
    model, tok = tiny_llama
    ids, pos = _prompt(tok)
    vec = torch.randn(len(pos), 64) * 5
    base = _logits(model, ids)
    with inject(model, InjectionSpec(site, mode, 2.0), [pos], [vec], ids.shape[1]):
        out = _logits(model, ids)
    first = pos[0]
    torch.testing.assert_close(base[:, :first], out[:, :first], atol=0, rtol=0)
    assert not torch.allclose(base[:, first], out[:, first])


@pytest.mark.parametrize("site", SITES)
def test_replace_writes_exact_vector(tiny_llama, site):
    model, tok = tiny_llama
    ids, pos = _prompt(tok, n=4)
    vec = torch.randn(len(pos), 64)
    seen = {}

    def grab(_m, _i, out):
        seen["h"] = out[0] if isinstance(out, tuple) else out

    with inject(model, InjectionSpec(site, "replace"), [pos], [vec], ids.shape[1]):
        with hooks([(site_module(model, site), "forward", grab)]):
            _logits(model, ids)
    torch.testing.assert_close(seen["h"][0, pos], vec, atol=0, rtol=0)


def test_norm_matched_addition_formula(tiny_llama):
    model, tok = tiny_llama
    ids, pos = _prompt(tok, n=2)
    vec = torch.randn(2, 64)
    plain = hidden_at_layers(model, ids, None, [1])[1]
    seen = {}
    with inject(model, InjectionSpec("layer:1", "add", 0.5), [pos], [vec], ids.shape[1]):
        with hooks([(site_module(model, "layer:1"), "forward", lambda m, i, o: seen.update(h=o))]):
            _logits(model, ids)
    h = plain[0, pos]
    expected = h + 0.5 * h.norm(dim=-1, keepdim=True) * vec / vec.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(seen["h"][0, pos], expected, atol=1e-5, rtol=1e-5)


def test_embedding_site_is_input_embedding_module(tiny_llama):
    model, _ = tiny_llama
    assert site_module(model, "embedding") is get_embedding(model)


def test_injection_is_differentiable_in_the_vector(tiny_llama):
    model, tok = tiny_llama
    ids, pos = _prompt(tok)
    vec = torch.randn(len(pos), 64, requires_grad=True)
    with inject(model, InjectionSpec("layer:1", "add", 1.0), [pos], [vec], ids.shape[1]):
        loss = model(input_ids=ids).logits[0, -1].logsumexp(-1)
    loss.backward()
    assert vec.grad is not None and vec.grad.abs().sum() > 0


def test_hooks_removed_even_when_body_raises(tiny_llama):
    model, tok = tiny_llama
    ids, pos = _prompt(tok)
    before = count_hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with inject(
            model, InjectionSpec("layer:1"), [pos], [torch.randn(len(pos), 64)], ids.shape[1]
        ):
            assert count_hooks(model) == before + 1
            raise RuntimeError("boom")
    assert count_hooks(model) == before


def test_hooks_removed_when_registration_fails_half_way(tiny_llama):
    model, _ = tiny_llama
    before = count_hooks(model)
    layer = site_module(model, "layer:0")
    with pytest.raises(ValueError, match="unknown hook kind"):
        with hooks([(layer, "forward", lambda *a: None), (layer, "backward", lambda *a: None)]):
            pass
    assert count_hooks(model) == before


@pytest.mark.parametrize(
    "spec",
    [dict(site="layer"), dict(site="mlp:1"), dict(mode="mix"), dict(coefficient=float("nan"))],
)
def test_bad_injection_spec(spec):
    with pytest.raises(OracleInputError):
        InjectionSpec(**spec)


def test_out_of_range_site(tiny_llama):
    model, _ = tiny_llama
    with pytest.raises(OracleInputError, match="out of range"):
        site_module(model, "layer:7")
