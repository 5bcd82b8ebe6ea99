"""An answer's own log-probability under the oracle (the evaluation's confidence): teacher-forced
on the oracle's prompt, equal to the sum of the greedy steps' log-probabilities."""

from __future__ import annotations

import torch

from oracle.oracle import ActivationOracle
from oracle.prompts import build_oracle_prompt
from tests.helpers import MESSAGES, make_oracle_dir


def test_answer_logprob_equals_the_tokens_log_probabilities_one_by_one(tmp_path):
    _, oracle_dir = make_oracle_dir(tmp_path, read_layers=(2,))
    ao = ActivationOracle.load(oracle=oracle_dir, device="cpu", dtype="float32")
    acts = ao.capture([MESSAGES[:2], MESSAGES], layers=[2])
    sets = [c.activations[0] for c in acts]
    questions = ["What persona?", "Who is it?"]
    answers = ao.answer(sets, questions, layer=2, max_new_tokens=4)
    scores = ao.answer_logprobs(sets, questions, answers, layer=2)
    # by hand, one prompt at a time (no padding): the same sum
    for acts_ND, question, answer, score in zip(sets, questions, answers, scores, strict=True):
        prompt = build_oracle_prompt(
            ao.oracle_tokenizer, question, acts_ND.shape[0], 2, answer=answer
        )
        ids = torch.tensor([prompt.input_ids])
        with ao._injection([prompt], [ao.injected(acts_ND, 2)], [0], ids.shape[1]):
            logp = ao.oracle_model(input_ids=ids).logits.float().log_softmax(-1)[0]
        expected = sum(
            float(logp[t - 1, prompt.input_ids[t]])
            for t in range(prompt.answer_start, len(prompt.input_ids))
        )
        assert abs(score - expected) < 1e-3, (score, expected)
    # another answer is less likely than the greedy one, and an empty one is scored too
    other = ao.answer_logprobs(sets[:1], questions[:1], ["A completely different thing."], 2)
    assert other[0] < scores[0]
    assert ao.answer_logprobs(sets[:1], questions[:1], [""], 2)[0] < 0
