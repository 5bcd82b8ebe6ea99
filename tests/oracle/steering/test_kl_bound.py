"""The KL term of steering, bounded in memory (issue 18): the run kept batch x tokens x vocab
float32 reference log-probabilities for its whole length (about 17 GB at 64 x 512 x 128k).
Now only the positions steering can change are kept, within a budget, and recomputed beyond it;
the KL values equal the full computation's. A non-finite loss stops the run with a 400-type
error instead of turning the vector to NaN."""

from __future__ import annotations

import pytest
import torch

from oracle.errors import OracleInputError
from oracle.oracle import ActivationOracle
from oracle.steering import SteerConfig
from oracle.steering.kl import KLTerm
from oracle.steering.run import SteeringRun
from tests.helpers import make_oracle_dir

PROMPTS = ["Hello there", "How are you today?", "Tell me about the stars and the sea."]
Q, A = "What persona is the assistant playing?", "A pirate."


@pytest.fixture(scope="module")
def ao(tmp_path_factory):
    _, oracle_dir = make_oracle_dir(tmp_path_factory.mktemp("kl"), "llama", read_layers=(2,))
    return ActivationOracle.load(oracle=str(oracle_dir), device="cpu", dtype="float32")


def full_kl(run: SteeringRun, vector: torch.Tensor) -> float:
    """The KL term as the full (B, T, V) computation gives it, mean over real tokens."""
    term = run.kl_term
    ids_BT, mask_BT = term.ids_BT, term.mask_BT
    with torch.no_grad():
        with run.core.ao.adapter_disabled():
            ref_BTV = run.core.ao.target(input_ids=ids_BT, attention_mask=mask_BT).logits
        with run.core.steered(vector, term.steer_BT):
            new_BTV = run.core.ao.target(input_ids=ids_BT, attention_mask=mask_BT).logits
    ref_BTV, new_BTV = ref_BTV.float().log_softmax(-1), new_BTV.float().log_softmax(-1)
    kl_BT = (new_BTV.exp() * (new_BTV - ref_BTV)).sum(-1)
    return float(kl_BT[mask_BT.bool()].mean())


@pytest.mark.parametrize("apply", ["reply", "first", "all"])
def test_the_reference_keeps_only_what_steering_can_change(ao, apply):
    cfg = SteerConfig(question=Q, answer=A, steps=1, kl_weight=0.5, reply_tokens=4, apply=apply)
    run = SteeringRun(ao, PROMPTS, cfg)
    term = run.kl_term
    vocab = ao.target.get_output_embeddings().weight.shape[0]
    n_real = int(term.mask_BT.sum())
    full_bytes = term.ids_BT.numel() * vocab * 4
    if apply == "all":
        assert term.reference_bytes == n_real * vocab * 4
    else:  # each prompt's last position alone
        assert term.reference_bytes == len(PROMPTS) * vocab * 4 < full_bytes / 4
    vector = torch.randn(ao.d_model, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        got = float(term(vector))
    assert got > 0
    assert got == pytest.approx(full_kl(run, vector), rel=1e-4, abs=1e-7)


def test_beyond_the_budget_the_reference_is_recomputed_not_kept(ao):
    cfg = SteerConfig(question=Q, answer=A, steps=1, kl_weight=0.5, reply_tokens=4, apply="all")
    run = SteeringRun(ao, PROMPTS, cfg)
    kept = run.kl_term
    bounded = KLTerm(run.core, kept.ids_BT, kept.mask_BT, budget=1024)
    assert bounded.reference_bytes == 0 < kept.reference_bytes
    vector = torch.randn(ao.d_model, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        assert float(bounded(vector)) == pytest.approx(float(kept(vector)), rel=1e-6)
    # and a run trains through it: the KL term's gradient reaches the vector
    run.kl_term = bounded
    run.step()
    assert run.kl[-1] >= 0 and run.vector().norm() > 0


def test_a_non_finite_loss_stops_the_run_before_the_vector_turns_nan(ao):
    cfg = SteerConfig(question=Q, answer=A, read="prompt", steps=3, lr=0.05)
    run = SteeringRun(ao, PROMPTS, cfg)
    # an overflow in the steered model, as a huge vector or a large lr gives
    run.core.answer_nll = lambda _idx, vector: (vector * float("inf")).sum()
    with pytest.raises(OracleInputError, match="not finite"):
        run.step()
    assert len(run.losses) == 0
    assert torch.isfinite(run.vector()).all()
