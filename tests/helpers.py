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
