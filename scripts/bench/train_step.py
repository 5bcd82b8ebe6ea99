"""Oracle training step time as a ratio to a plain peft LoRA SFT step on the same tokens.

(a) oracle step: capture the target's block output at the read layer (adapter off, no grad,
    the forward pass stopped after the read layer), inject it at the placeholders of the oracle
    prompt, forward + backward + AdamW step with the loss on the answer tokens;
(b) plain LoRA SFT: the same oracle token batches, forward + backward + AdamW step, no capture,
    no injection.

Prints mean step times, the ratio (a)/(b) (target <= 1.4), oracle tokens per second, and peak
memory (torch.cuda.max_memory_allocated per step kind on GPU; the process's ru_maxrss on CPU).
Models are randomly initialised from a config (no download):

    python -m scripts.bench.train_step                                   # tiny, CPU, seconds
    python -m scripts.bench.train_step --model qwen3-0.6b --dtype bf16 --device cuda
    python -m scripts.bench.train_step --model qwen3-1.7b --dtype bf16 --device cuda --gradient-checkpointing
    python -m scripts.bench.train_step --model smollm2-135m --compare-dtypes --target-len 72 \
        --positions 24 --answer-len 4     # fp32 vs bf16 (sdpa, eager) oracle steps, one run

``--compare-dtypes`` times the oracle step of the same model in fp32, in bf16 weights with
bf16 autocast (the LoRA and AdamW state in fp32, as training keeps them) and in bf16 with
eager attention, alternating step by step, and prints each against fp32.

Run it alone (other torch processes on the machine distort CPU timings).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

# Shapes of the real checkpoints (from their config.json), random weights.
SHAPES = {
    # SmolLM2-135M-Instruct (Llama): the SmolLM2 world's target and oracle.
    "smollm2-135m": dict(
        model_type="llama",
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
    # Not a real checkpoint: a small Qwen3 for CPU runs where fixed overheads do not dominate.
    "qwen3-small": dict(
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        vocab_size=32000,
        tie_word_embeddings=True,
    ),
    "qwen3-0.6b": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen3-1.7b": dict(
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
}


def build_model(name: str, dtype: torch.dtype, device: str, attention: str | None = None):
    """A random model of the named shape (``tiny``: the project's tiny Llama, hidden 64)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if name == "tiny":
        from oracle.tiny import build_tiny

        model, _ = build_tiny("llama")
        return model.to(device=device, dtype=dtype)
    if name not in SHAPES:
        raise SystemExit(f"unknown --model {name!r}; choose tiny or one of {sorted(SHAPES)}")
    shape = dict(SHAPES[name])
    config = AutoConfig.for_model(shape.pop("model_type", "qwen3"), **shape)
    torch.manual_seed(0)
    extra = {"attn_implementation": attention} if attention else {}
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, **extra)
    return model


def make_batches(n: int, args, vocab: int, gen: torch.Generator):
    """Random token batches shaped like oracle training: target (B, S), oracle prompt (B, T)."""
    batches = []
    b, s, p, a = args.batch_size, args.target_len, args.positions, args.answer_len
    t = 8 + p + args.question_len + a
    for _ in range(n):
        target_BS = torch.randint(10, vocab, (b, s), generator=gen)
        oracle_BT = torch.randint(10, vocab, (b, t), generator=gen)
        labels_BT = torch.full_like(oracle_BT, -100)
        labels_BT[:, -a:] = oracle_BT[:, -a:]
        batches.append((target_BS, oracle_BT, labels_BT))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="tiny",
        help="tiny | smollm2-135m | qwen3-small | qwen3-0.6b | qwen3-1.7b",
    )
    parser.add_argument(
        "--compare-dtypes",
        action="store_true",
        help="time oracle steps in fp32, bf16 (sdpa) and bf16 (eager) side by side",
    )
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each kind")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--target-len", type=int, default=128, help="target tokens per row")
    parser.add_argument("--positions", type=int, default=32, help="read positions per row")
    parser.add_argument("--question-len", type=int, default=16)
    parser.add_argument("--answer-len", type=int, default=16)
    parser.add_argument("--read-layer", type=int, default=None, help="default: 50%% of depth")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compare_dtypes:
        compare_dtypes(args)
        return

    from oracle.adapter import add_oracle_lora
    from oracle.inject import InjectionSpec, inject
    from oracle.layers import num_layers
    from training.trainer import capture_vectors

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    cuda = args.device.startswith("cuda")
    model = add_oracle_lora(build_model(args.model, dtype, args.device), r=args.lora_r)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    layer = args.read_layer if args.read_layer is not None else num_layers(model) // 2
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    vocab = model.get_input_embeddings().weight.shape[0]
    spec = InjectionSpec("layer:1", "add", 1.0)
    placeholders = list(range(8, 8 + args.positions))
    read = list(range(args.target_len - args.positions, args.target_len))
    autocast = torch.autocast(
        "cuda", dtype=torch.bfloat16, enabled=cuda and dtype == torch.bfloat16
    )

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def sft_step(batch) -> None:
        _, oracle_BT, labels_BT = (x.to(args.device) for x in batch)
        with autocast:
            loss = model(input_ids=oracle_BT, labels=labels_BT).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def oracle_step(batch) -> None:
        target_BS, oracle_BT, labels_BT = (x.to(args.device) for x in batch)
        b = target_BS.shape[0]
        with autocast:
            vectors = capture_vectors(model, target_BS, None, [layer] * b, [read] * b)
            with inject(model, spec, [placeholders] * b, vectors, oracle_BT.shape[1]):
                loss = model(input_ids=oracle_BT, labels=labels_BT).loss
                loss.backward()  # inside: checkpoint recomputation must see the injection
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    gen = torch.Generator().manual_seed(0)
    batches = make_batches(args.warmup + args.steps, args, vocab, gen)
    times: dict[str, list[float]] = {"oracle": [], "sft": []}
    peaks: dict[str, int] = {"oracle": 0, "sft": 0}
    for i, batch in enumerate(batches):
        # Alternate the two kinds so drift in machine load hits both alike.
        for kind, step in (("sft", sft_step), ("oracle", oracle_step)):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            step(batch)
            sync()
            if i >= args.warmup:
                times[kind].append(time.perf_counter() - start)
            if cuda:
                peaks[kind] = max(peaks[kind], torch.cuda.max_memory_allocated())
    mean = {k: statistics.mean(v) for k, v in times.items()}
    oracle_tokens = args.batch_size * batches[0][1].shape[1]
    result = {
        "model": args.model,
        "dtype": args.dtype,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "read_layer": layer,
        "batch_size": args.batch_size,
        "target_len": args.target_len,
        "oracle_len": batches[0][1].shape[1],
        "gradient_checkpointing": args.gradient_checkpointing,
        "oracle_step_s": mean["oracle"],
        "sft_step_s": mean["sft"],
        "ratio": mean["oracle"] / mean["sft"],
        "oracle_tokens_per_s": oracle_tokens / mean["oracle"],
        "sft_tokens_per_s": oracle_tokens / mean["sft"],
        "target_tokens_per_s": args.batch_size * args.target_len / mean["oracle"],
    }
    if cuda:
        result["peak_mem_oracle_gib"] = peaks["oracle"] / 2**30
        result["peak_mem_sft_gib"] = peaks["sft"] / 2**30
    else:
        result["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for key, value in result.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key:>24}: {shown}")
    if args.json:
        print(json.dumps(result))


def compare_dtypes(args) -> None:
    """Oracle step times of one shape in fp32, bf16 + autocast (sdpa) and bf16 + autocast
    (eager), alternating variant by variant on the same batches; ratios against fp32."""
    from oracle.adapter import add_oracle_lora
    from oracle.inject import InjectionSpec, inject
    from oracle.layers import num_layers
    from training.trainer import capture_vectors

    variants = {
        "fp32 sdpa": (torch.float32, "sdpa"),
        "bf16 sdpa": (torch.bfloat16, "sdpa"),
        "bf16 eager": (torch.bfloat16, "eager"),
    }
    models, optimizers = {}, {}
    for name, (dtype, attention) in variants.items():
        model = add_oracle_lora(
            build_model(args.model, dtype, args.device, attention), r=args.lora_r
        )
        model.train()
        models[name] = model
        params = [p for p in model.parameters() if p.requires_grad]
        optimizers[name] = torch.optim.AdamW(params, lr=1e-5)
    any_model = next(iter(models.values()))
    layer = args.read_layer if args.read_layer is not None else num_layers(any_model) // 2
    spec = InjectionSpec("layer:1", "add", 1.0)
    placeholders = list(range(8, 8 + args.positions))
    read = list(range(args.target_len - args.positions, args.target_len))
    vocab = any_model.get_input_embeddings().weight.shape[0]
    batches = make_batches(args.warmup + args.steps, args, vocab, torch.Generator().manual_seed(0))

    def step(name: str, batch) -> None:
        model, (dtype, _) = models[name], variants[name]
        target_BS, oracle_BT, labels_BT = batch
        b = target_BS.shape[0]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            vectors = capture_vectors(model, target_BS, None, [layer] * b, [read] * b)
            with inject(model, spec, [placeholders] * b, vectors, oracle_BT.shape[1]):
                loss = model(input_ids=oracle_BT, labels=labels_BT).loss
                loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {name: [] for name in variants}
    for i, batch in enumerate(batches):
        for name in variants:  # alternate, so that drift in machine load hits all alike
            start = time.perf_counter()
            step(name, batch)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    tokens = args.batch_size * (args.target_len + batches[0][1].shape[1])
    base = statistics.mean(times["fp32 sdpa"])
    result = {
        "model": args.model,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "target_len": args.target_len,
        "oracle_len": batches[0][1].shape[1],
        "steps": args.steps,
    }
    print(
        f"{args.model}: batch {args.batch_size}, target {args.target_len} + oracle "
        f"{batches[0][1].shape[1]} tokens, {args.threads} threads, {args.steps} steps each"
    )
    for name, values in times.items():
        mean = statistics.mean(values)
        result[name] = {
            "step_s": mean,
            "stdev_s": statistics.stdev(values) if len(values) > 1 else 0.0,
            "tokens_per_s": tokens / mean,
            "speedup_vs_fp32": base / mean,
        }
        print(
            f"{name:>12}: {mean:.3f} s a step ({tokens / mean:.0f} tokens/s), "
            f"{base / mean:.2f}x fp32"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
