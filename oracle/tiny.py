"""Tiny random models and tokenizers, built offline from configs, for tests, benchmarks, demos.

``build_tiny(family)`` returns ``(model, tokenizer)`` for a family whose tokenizer mimics the
real one's chat-template quirks: ChatML (Qwen), Llama 3 headers, Gemma (no system role: the
system prompt is folded into the first user turn) and GPT-2 (no chat template at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{% set first = messages[0]['content'] | trim %}{% set msgs = messages[1:] %}"
    "{% else %}{% set first = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{% if loop.first and first %}{{ first }}\n\n{% endif %}"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# family -> (special tokens, bos, eos, chat template)
TOKENIZER_STYLES = {
    "chatml": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>", CHATML),
    "llama3": (
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|eot_id|>",
        LLAMA3,
    ),
    "gemma": (
        ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
        "<bos>",
        "<end_of_turn>",
        GEMMA,
    ),
    "gpt2": (["<|endoftext|>"], "<|endoftext|>", "<|endoftext|>", None),
}

_CORPUS = [
    "You are a pirate. Act as a chef in every reply. The secret word is apple.",
    "Hello! How are you today? I am just a helpful assistant. What is the weather like?",
    "Layer 1: ? ? ? ? What persona is the assistant playing? Is there a system prompt? Yes No",
    "The quick brown fox jumps over the lazy dog. Arr matey, the sea be calm tonight.",
    "Tell me about the stars. Bake the bread at two hundred degrees. Beep boop, human.",
] * 20


def train_byte_level_bpe(
    texts: Iterable[str],
    vocab_size: int,
    specials: list[str],
    bos: str | None,
    eos: str | None,
    chat_template: str | None,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``texts``; ``specials[0]`` pads. Deterministic, offline."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=specials[0]
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


def build_tokenizer(style: str = "chatml", vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a small built-in corpus; deterministic and offline."""
    specials, bos, eos, template = TOKENIZER_STYLES[style]
    return train_byte_level_bpe(_CORPUS, vocab_size, specials, bos, eos, template)


# The shape every decoder family shares: hidden 64, 4 blocks of 4 heads.
BASE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4)
GQA = dict(BASE, num_key_value_heads=2)  # grouped-query attention, 2 key/value heads
MQA = dict(BASE, num_key_value_heads=1, head_dim=16)  # Gemma: one key/value head

# family -> (model_type, tokenizer style, config kwargs)
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "llama": ("llama", "llama3", GQA),
    "mistral": ("mistral", "chatml", dict(GQA, sliding_window=None)),
    "qwen2": ("qwen2", "chatml", GQA),
    "qwen3": ("qwen3", "chatml", dict(GQA, head_dim=16)),
    "gemma": ("gemma", "gemma", MQA),
    "gemma2": ("gemma2", "gemma", dict(MQA, sliding_window=32)),
    "gemma3": ("gemma3_text", "gemma", dict(MQA, sliding_window=32)),
    "phi": ("phi", "chatml", BASE),
    "gpt2": ("gpt2", "gpt2", dict(n_embd=64, n_layer=4, n_head=4, n_positions=512)),
    "gpt_neox": ("gpt_neox", "chatml", BASE),
}


def build_tiny(family: str = "llama", seed: int = 0, **overrides):
    """``(model, tokenizer)``: a random tiny model of ``family`` in eval mode, float32, on CPU.

    >>> model, tok = build_tiny("qwen3", num_hidden_layers=2)
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose from {sorted(FAMILIES)}")
    model_type, style, kwargs = FAMILIES[family]
    tokenizer = build_tokenizer(style)
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = AutoConfig.for_model(model_type, **{**kwargs, **ids, **overrides})
    if hasattr(config, "tie_word_embeddings") and "tie_word_embeddings" not in overrides:
        config.tie_word_embeddings = False
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def save_tiny(directory: str | Path, family: str = "llama", seed: int = 0, **overrides) -> Path:
    """Build a tiny model and save it (weights + tokenizer) so it loads like any local model."""
    model, tokenizer = build_tiny(family, seed=seed, **overrides)
    path = Path(directory)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
