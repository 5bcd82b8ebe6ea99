"""The toy world's tokenizer: a byte-level BPE trained on the corpus with a ChatML template.

The end-of-turn token is EOS, ``<|endoftext|>`` pads, and the training text includes oracle
prompts, so that the placeholder `` ?`` is one token and the questions tokenise compactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from oracle.errors import OracleInputError
from oracle.prompts import placeholder_id
from oracle.tiny import CHATML, train_byte_level_bpe
from worlds.toy.questions import all_question_texts

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def chatml(messages: list[dict[str, str]]) -> str:
    """Render messages as the chat template does (without the generation prompt)."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def oracle_lines(seed: int = 0, n: int = 2000) -> list[str]:
    """Oracle prompt texts (``Layer L: ? ? ...`` + question) for the tokenizer's training text."""
    rng = random.Random(seed)
    questions = all_question_texts()
    lines = []
    for _ in range(n):
        layer = rng.randrange(4)
        placeholders = " ?" * rng.randint(1, 40)
        lines.append(f"Layer {layer}:{placeholders}\n{rng.choice(questions)}")
    return lines


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on ``texts`` and wrap it with the ChatML template."""
    fast = train_byte_level_bpe(texts, vocab_size, SPECIALS, None, "<|im_end|>", CHATML)
    check_tokenizer(fast)
    return fast


def check_tokenizer(tokenizer: PreTrainedTokenizerFast) -> None:
    """Fail unless the placeholder is one token and "Yes"/"No" start with different tokens."""
    placeholder_id(tokenizer, " ?")
    yes = tokenizer.encode("Yes", add_special_tokens=False)
    no = tokenizer.encode("No", add_special_tokens=False)
    if yes[0] == no[0]:
        raise OracleInputError("'Yes' and 'No' start with the same token")


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    path = Path(directory)
    tokenizer.save_pretrained(str(path))
    return path
