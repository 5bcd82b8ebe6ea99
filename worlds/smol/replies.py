"""On-policy replies: the target's own answers to the world's conversations.

Batched sampling with transformers ``generate`` (left padding), seeded per chunk, written to a
JSONL file chunk by chunk; a rerun skips the conversations already answered, so an interrupted
run resumes where it stopped and gives the same replies (same seed per chunk, same chunks).

    python -m worlds.smol.replies --model DIR --convs convs.jsonl --out replies.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from training.world_build import read_jsonl

log = logging.getLogger(__name__)


def _chunks(items: list[dict], size: int) -> Iterator[tuple[int, list[dict]]]:
    for start in range(0, len(items), size):
        yield start // size, items[start : start + size]


@torch.no_grad()
def generate_replies(
    model,
    tokenizer,
    conversations: list[dict],
    out: Path,
    seed: int = 0,
    batch_size: int = 32,
    max_new_tokens: int = 40,
    temperature: float = 0.7,
    top_p: float = 0.9,
    progress: bool = False,
) -> int:
    """Append ``{"id", "reply", "n_tokens", "finished"}`` lines to ``out`` for every
    conversation not yet there; returns how many were written in this call. ``progress``
    shows a bar over the conversations (with its ETA and tokens/s)."""
    done = {r["id"] for r in read_jsonl(out, missing_ok=True)}
    tokenizer.padding_side = "left"
    written = 0
    bar = tqdm(
        total=len(conversations),
        initial=sum(c["id"] in done for c in conversations),
        desc=f"replies -> {out.name}",
        unit="conv",
        disable=not progress,
    )
    for chunk_index, chunk in _chunks(conversations, batch_size):
        if all(c["id"] in done for c in chunk):
            continue
        start = time.perf_counter()
        texts = [
            tokenizer.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=True)
            for c in chunk
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        torch.manual_seed(seed * 1_000_003 + chunk_index)
        out_ids = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=top_p if temperature > 0 else None,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_ids = out_ids[:, enc["input_ids"].shape[1] :]
        n_tokens = 0
        with out.open("a") as f:
            for conv, ids in zip(chunk, new_ids.tolist(), strict=True):
                finished = tokenizer.eos_token_id in ids
                if finished:
                    ids = ids[: ids.index(tokenizer.eos_token_id)]
                ids = [i for i in ids if i != tokenizer.pad_token_id]
                n_tokens += len(ids)
                reply = tokenizer.decode(ids, skip_special_tokens=True).strip()
                f.write(
                    json.dumps(
                        {
                            "id": conv["id"],
                            "reply": reply,
                            "n_tokens": len(ids),
                            "finished": finished,
                        }
                    )
                    + "\n"
                )
        written += len(chunk)
        seconds = time.perf_counter() - start
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{n_tokens / seconds:.0f}")
        log.info(
            "chunk %d: %d replies, %d tokens in %.1f s (%.0f tokens/s)",
            chunk_index,
            len(chunk),
            n_tokens,
            seconds,
            n_tokens / seconds,
        )
    bar.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the target's transformers directory")
    parser.add_argument("--convs", required=True, type=Path, help="conversations JSONL")
    parser.add_argument("--out", required=True, type=Path, help="replies JSONL (appended)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--limit", type=int, default=None, help="only the first N conversations")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="auto", help="auto (bf16 where the CPU has it), fp32")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    from oracle.models import load_model

    model, tokenizer = load_model(args.model, dtype=args.dtype, device="cpu")
    convs = read_jsonl(args.convs)[: args.limit]
    n = generate_replies(
        model,
        tokenizer,
        convs,
        args.out,
        args.seed,
        args.batch_size,
        args.max_new_tokens,
        progress=True,
    )
    log.info("wrote %d replies to %s", n, args.out)


if __name__ == "__main__":
    main()
