"""Test helpers: tiny models with overrides, and standard chat inputs."""

from __future__ import annotations

from oracle.tiny import build_tiny

ALL_FAMILIES = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "phi",
    "gpt2",
    "gpt_neox",
]
CHAT_FAMILIES = [f for f in ALL_FAMILIES if f != "gpt2"]

SYSTEM = "You are a pirate."
MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hello! How are you today?"},
    {"role": "assistant", "content": "Arr matey, the sea be calm tonight."},
]


def build_tiny_model(family: str = "llama", seed: int = 0, **overrides):
    """``(model, tokenizer)`` of a tiny random ``family`` model; ``overrides`` go to the config."""
    return build_tiny(family, seed=seed, **overrides)


def make_oracle_dir(
    directory,
    family: str = "llama",
    seed: int = 0,
    site: str = "layer:1",
    mode: str = "add",
    read_layers=(1,),
    **overrides,
):
    """Save a tiny base model and an *untrained but non-trivial* oracle adapter beside it.

    LoRA B matrices are randomised so that the adapter changes the model's outputs.
    Returns ``(base_dir, oracle_dir)``.
    """
    from pathlib import Path

    import torch

    from oracle.adapter import add_oracle_lora, save_oracle
    from oracle.config import OracleConfig

    directory = Path(directory)
    model, tok = build_tiny_model(family, seed=seed, **overrides)
    base_dir = directory / "base"
    model.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    peft_model = add_oracle_lora(model, r=4, alpha=8)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    config = OracleConfig(
        base_model="../base", read_layers=list(read_layers), injection_site=site, mode=mode
    )
    oracle_dir = save_oracle(peft_model, tok, config, directory / "oracle")
    return base_dir, oracle_dir
