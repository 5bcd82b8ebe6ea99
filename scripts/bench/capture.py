"""Capture throughput as a ratio to a plain forward pass of the same batch, and the speed-up of
batched capture over one-by-one capture.

    python -m scripts.bench.capture [--family llama] [--hidden 256] [--layers 4] [--batch 16]
        [--seq 128] [--read-layer 1] [--threads 2] [--device cpu] [--repeats 5]

Run it alone (the machine's other torch processes distort the timings).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", default="llama")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128, help="words per prompt (tokens vary)")
    parser.add_argument("--read-layer", type=int, default=None, help="default: the last block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from oracle.capture import capture, pad_id_of, pad_right
    from oracle.inputs import TargetInput, tokenize_input
    from oracle.tiny import build_tiny

    model, tok = build_tiny(
        args.family,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        num_key_value_heads=max(1, args.hidden // 64),
    )
    model.to(args.device)
    words = "the quick brown fox jumps over the lazy dog and sails the calm sea tonight".split()
    gen = torch.Generator().manual_seed(0)
    prompts = []
    for _ in range(args.batch):
        n = args.seq - int(torch.randint(0, args.seq // 4, (1,), generator=gen))
        prompts.append(
            " ".join(words[int(i)] for i in torch.randint(0, len(words), (n,), generator=gen))
        )
    read = args.layers - 1 if args.read_layer is None else args.read_layer
    rows = [tokenize_input(tok, TargetInput(prompt=p)).input_ids for p in prompts]
    ids_BT, mask_BT = pad_right(rows, pad_id_of(tok))
    ids_BT, mask_BT = ids_BT.to(args.device), mask_BT.to(args.device)

    @torch.no_grad()
    def plain_forward():
        model(input_ids=ids_BT, attention_mask=mask_BT, use_cache=False)

    def batched_capture():
        capture(model, tok, prompts, [read], "all", batch_size=args.batch)

    def one_by_one():
        capture(model, tok, prompts, [read], "all", batch_size=1)

    t_plain = _time(plain_forward, args.repeats)
    t_batched = _time(batched_capture, args.repeats)
    t_single = _time(one_by_one, max(1, args.repeats // 2))
    n_tokens = int(mask_BT.sum())
    print(
        f"model: {args.family} hidden={args.hidden} blocks={args.layers} read block={read}; "
        f"batch={args.batch}, {n_tokens} tokens; threads={args.threads}; device={args.device}"
    )
    print(f"plain forward (full model):   {t_plain * 1e3:8.1f} ms  {n_tokens / t_plain:9.0f} tok/s")
    print(
        f"capture, batched:             {t_batched * 1e3:8.1f} ms  {n_tokens / t_batched:9.0f} tok/s"
    )
    print(
        f"capture, one by one:          {t_single * 1e3:8.1f} ms  {n_tokens / t_single:9.0f} tok/s"
    )
    print(
        f"capture throughput / plain forward throughput: {t_plain / t_batched:.2f} (target >= 0.9)"
    )
    print(f"batched / one-by-one speed-up:                 {t_single / t_batched:.2f}")


if __name__ == "__main__":
    main()
