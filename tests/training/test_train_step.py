"""One oracle training step: capture sees the base model (adapter off, no grad), the injected
vectors reach the loss, and only LoRA weights change."""

from __future__ import annotations

import copy

import torch
from datasets import Dataset
from transformers import TrainingArguments

from oracle.adapter import add_oracle_lora
from oracle.capture import hidden_at_layers, pad_id_of
from oracle.inject import InjectionSpec
from tests.helpers import MESSAGES, build_tiny_model
from training.collate import OracleCollator
from training.config import TrainConfig
from training.prepare import prepare_dataset
from training.schema import make_row
from training.trainer import OracleTrainer, capture_vectors


def lora_model(seed: int = 0):
    model, tok = build_tiny_model("llama", seed=seed)
    base = copy.deepcopy(model)
    peft_model = add_oracle_lora(model, r=4, alpha=8)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return base, peft_model, tok


def test_capture_runs_the_base_model_without_grad():
    base, peft_model, tok = lora_model()
    ids_BT = torch.tensor([tok.apply_chat_template(MESSAGES, tokenize=True)["input_ids"]])
    vectors = capture_vectors(peft_model, ids_BT, None, [2], [[1, 3, 5]])
    expected = hidden_at_layers(base, ids_BT, None, [2])[2][0, [1, 3, 5]]
    torch.testing.assert_close(vectors[0], expected)
    with_adapter = hidden_at_layers(peft_model, ids_BT, None, [2])[2][0, [1, 3, 5]]
    assert not torch.allclose(with_adapter, expected)  # the adapter is live outside capture
    assert not vectors[0].requires_grad


def test_a_step_changes_only_lora_and_depends_on_the_activations(tmp_path):
    _, peft_model, tok = lora_model()
    rows = [
        make_row("What persona?", "A pirate.", messages=MESSAGES[:2], control="system", layer=1)
    ] * 4
    config = TrainConfig(model="m", output_dir="o", position_mix={"span": 1.0})
    data = prepare_dataset(Dataset.from_list(rows), tok, 4, [1], config)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=True,
    )
    trainer = OracleTrainer(
        model=peft_model,
        args=args,
        train_dataset=data,
        data_collator=OracleCollator(pad_id_of(tok)),
        injection=InjectionSpec("layer:1", "add", 1.0),
    )
    batch = trainer.data_collator([data[i] for i in range(4)])
    model_inputs, ctx = trainer._oracle_context(peft_model, batch)
    with torch.no_grad():
        plain = peft_model(**model_inputs).loss
        with ctx:
            injected = peft_model(**model_inputs).loss
    assert not torch.isclose(plain, injected)  # the injection reaches the loss

    trainer.train()
    changed = [n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])]
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)


def _lora_grads(tmp_path, checkpointing: bool) -> dict[str, torch.Tensor]:
    _, peft_model, tok = lora_model()
    rows = [
        make_row("What persona?", "A pirate.", messages=MESSAGES[:2], control="system", layer=2)
    ] * 2
    config = TrainConfig(model="m", output_dir="o", position_mix={"span": 1.0})
    data = prepare_dataset(Dataset.from_list(rows), tok, 4, [2], config)
    args = TrainingArguments(
        output_dir=str(tmp_path), remove_unused_columns=False, report_to=[], use_cpu=True
    )
    trainer = OracleTrainer(
        model=peft_model,
        args=args,
        train_dataset=data,
        data_collator=OracleCollator(pad_id_of(tok)),
        injection=InjectionSpec("layer:1", "add", 1.0),
    )
    if checkpointing:
        peft_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    peft_model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
    trainer.training_step(peft_model, trainer.data_collator([data[0], data[1]]))
    return {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_recomputes_with_the_injection(tmp_path):
    plain = _lora_grads(tmp_path / "a", checkpointing=False)
    recomputed = _lora_grads(tmp_path / "b", checkpointing=True)
    assert plain.keys() == recomputed.keys() and plain
    assert all("lora_" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(plain[name], recomputed[name], rtol=1e-4, atol=1e-6)


def test_loss_on_kept_logits_equals_the_full_causal_lm_loss(tmp_path):
    """compute_loss unembeds only the positions that predict answer tokens: same loss and LoRA
    gradients as the model's own loss over full logits."""
    _, peft_model, tok = lora_model()
    rows = [
        make_row("What persona?", "A pirate.", messages=MESSAGES[:2], control="system", layer=1),
        make_row("Who?", "A chef, surely.", messages=MESSAGES[:2], control="system", layer=1),
    ]
    config = TrainConfig(model="m", output_dir="o", position_mix={"span": 1.0})
    data = prepare_dataset(Dataset.from_list(rows), tok, 4, [1], config)
    args = TrainingArguments(
        output_dir=str(tmp_path), remove_unused_columns=False, report_to=[], use_cpu=True
    )
    trainer = OracleTrainer(
        model=peft_model,
        args=args,
        train_dataset=data,
        data_collator=OracleCollator(pad_id_of(tok)),
        injection=InjectionSpec("layer:1", "add", 1.0),
    )
    assert trainer._keeps_logits(peft_model)  # the kept-logits path runs, not the fallback
    batch = trainer.data_collator([data[0], data[1]])
    grads = []
    for use_trainer in (False, True):
        peft_model.zero_grad()
        model_inputs, ctx = trainer._oracle_context(peft_model, batch)
        with ctx:
            if use_trainer:
                loss = trainer.compute_loss(peft_model, model_inputs)
            else:
                loss = peft_model(**model_inputs).loss
        loss.backward()
        grads.append(
            (
                loss.detach(),
                {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None},
            )
        )
    (full, full_grads), (kept, kept_grads) = grads
    torch.testing.assert_close(kept, full)
    assert full_grads.keys() == kept_grads.keys() and full_grads
    for name in full_grads:
        torch.testing.assert_close(kept_grads[name], full_grads[name], rtol=1e-4, atol=1e-6)
