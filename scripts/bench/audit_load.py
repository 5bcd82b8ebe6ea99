"""Audit benchmark: pairs per second by batch size (as a ratio to batch size 1), and peak memory
of an audit of a log larger than the process's memory cap (streaming, not loading everything).

    # throughput: the toy world's oracle if shipped (else a tiny random one), synthetic records
    python -m scripts.bench.audit_load throughput [--records 64] [--positions 16] \
        [--batch-sizes 1,4,16,64] [--threads 2] [--oracle DIR]
    # memory: a LOG_GIB synthetic log audited by a child process whose address space is capped
    python -m scripts.bench.audit_load memory [--log-gib 4] [--cap-gib 2] [--positions 4096] \
        [--oracle-positions 64] [--batch-size 32] [--threads 2] [--work DIR]

Run it alone (other torch processes distort the timings). The memory run writes the log under
--work (default: a temporary directory) and reuses it when it is already there. Its records are
long (4096 positions, 1 MiB each) and the oracle reads the last 64 positions of each
(``oracle audit --max-positions``): every byte of the log is still read and checked (shape,
NaN), so memory shows streaming, while the oracle's work stays small enough for a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = ["Is the assistant playing a pirate?", "What persona is the assistant playing?"]
GIB = 2**30


def tiny_oracle(directory: Path, hidden: int = 64, layers: int = 2, max_pos: int = 1024) -> Path:
    """A tiny random Llama and an untrained oracle adapter beside it; returns the oracle dir."""
    import torch

    from oracle.adapter import add_oracle_lora, save_oracle
    from oracle.config import OracleConfig
    from oracle.tiny import build_tiny

    if (directory / "oracle" / "oracle_config.json").is_file():
        return directory / "oracle"
    model, tok = build_tiny(
        "llama", hidden_size=hidden, num_hidden_layers=layers, max_position_embeddings=max_pos
    )
    model.save_pretrained(directory / "base")
    tok.save_pretrained(directory / "base")
    peft_model = add_oracle_lora(model, r=4, alpha=8)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    config = OracleConfig(base_model="../base", read_layers=[1], positions="all")
    return save_oracle(peft_model, tok, config, directory / "oracle")


def default_oracle_or_tiny(work: Path) -> Path:
    from worlds.toy.world import TOY_WORLD

    toy = TOY_WORLD / "oracle"
    if (toy / "oracle_config.json").is_file():
        return toy
    return tiny_oracle(work / "tiny")


def throughput(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from audit.logformat import ActivationLog
    from audit.questions import make_questions
    from audit.runner import run_audit
    from audit.synthetic import write_synthetic_log
    from oracle.engines import create_engine

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        oracle = Path(args.oracle) if args.oracle else default_oracle_or_tiny(work)
        sizes = [int(x) for x in args.batch_sizes.split(",")]
        engine = create_engine("hf", None, str(oracle), batch_size=max(sizes), device="cpu")
        write_synthetic_log(work / "log", args.records, engine.d_model, args.positions)
        log = ActivationLog(work / "log")
        questions = make_questions(QUESTIONS)
        pairs = args.records * len(questions)
        print(f"oracle {oracle} (d_model {engine.d_model}), {args.records} records x "
              f"{len(questions)} questions = {pairs} pairs, {args.positions} positions, "
              f"max_new_tokens {args.max_new_tokens}, {args.threads} threads")  # fmt: skip
        run_audit(engine, log, questions[:1], work / "warm", batch_size=4, max_new_tokens=2)
        rates = {}
        for bs in sizes:
            engine.batch_size = bs
            start = time.perf_counter()
            state = run_audit(
                engine, log, questions, work / f"bs{bs}", batch_size=bs,
                max_new_tokens=args.max_new_tokens,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            assert state.answered == pairs and state.errors == 0, state
            rates[bs] = pairs / seconds
            print(f"batch {bs:4d}: {rates[bs]:8.1f} pairs/s ({seconds:.1f} s)", flush=True)
        best = max(rates, key=rates.get)
        base = rates.get(1)
        ratio = f"{rates[best] / base:.1f}x batch size 1 (target >= 5)" if base else "n/a"
        print(f"best batch size {best}: {rates[best]:.1f} pairs/s = {ratio}")


def _limit(cap_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    return apply


def memory(args: argparse.Namespace) -> None:
    from audit.logformat import ActivationLog
    from audit.synthetic import write_synthetic_log

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_audit_"))
    work.mkdir(parents=True, exist_ok=True)
    oracle = tiny_oracle(work / "tiny", max_pos=args.oracle_positions + 64)
    record_bytes = args.positions * 64 * 4
    n_records = int(args.log_gib * GIB) // record_bytes
    log_dir = work / f"log_{args.log_gib:g}gib_{args.positions}"
    start = time.perf_counter()
    write_synthetic_log(log_dir, n_records, 64, args.positions, shard_records=64)
    size = sum(p.stat().st_size for p in log_dir.rglob("*") if p.is_file())
    print(f"log {log_dir}: {n_records} records, {size / GIB:.2f} GiB on disk "
          f"({time.perf_counter() - start:.0f} s to write or check)", flush=True)  # fmt: skip
    assert ActivationLog(log_dir).manifest.record_count == n_records
    out = work / "out_memory"
    shutil.rmtree(out, ignore_errors=True)
    cap = int(args.cap_gib * GIB)
    cmd = [sys.executable, "-m", "scripts.bench.audit_load", "_child", "--logs", str(log_dir), "--oracle", str(oracle),
           "--out", str(out), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--max-positions", str(args.oracle_positions)]  # fmt: skip
    # RLIMIT_AS counts address space reserved but never touched: Arrow's default allocator
    # (mimalloc) reserves about 1 GiB up front, and glibc 64 MiB per thread arena. The capped
    # child uses malloc with two arenas, so that the cap measures memory actually used.
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        ARROW_DEFAULT_MEMORY_POOL="system",
        MALLOC_ARENA_MAX="2",
    )
    start = time.perf_counter()
    proc = subprocess.run(cmd, preexec_fn=_limit(cap), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit(f"the capped audit failed (exit {proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"audit under RLIMIT_AS = {args.cap_gib:g} GiB of a {size / GIB:.2f} GiB log: "
          f"{result['pairs']} pairs ({result['errors']} errors) in {seconds:.0f} s, "
          f"peak RSS {result['peak_rss_mib']:.0f} MiB, peak address space "
          f"{result['peak_address_space_mib'] or 0:.0f} MiB")  # fmt: skip
    for kind in result["error_kinds"]:
        print(f"  error: {kind}")
    if result["errors"]:
        raise SystemExit("the capped audit recorded errors (above): the cap is too tight")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def child(args: argparse.Namespace) -> None:
    """The capped process: one audit of the whole log, then its peak memory as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from audit.logformat import ActivationLog
    from audit.questions import make_questions
    from audit.runner import run_audit
    from oracle.engines import create_engine

    engine = create_engine("hf", None, args.oracle, batch_size=args.batch_size, device="cpu")
    state = run_audit(
        engine, ActivationLog(args.logs), make_questions(QUESTIONS[:1]), args.out,
        batch_size=args.batch_size, max_new_tokens=1, max_positions=args.max_positions,
    )  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from collections import Counter

    from audit.results import ResultsFile

    kinds = Counter(r["error"] for r in ResultsFile(Path(args.out) / "results.jsonl").rows())
    kinds.pop(None, None)
    status = Path("/proc/self/status")
    vm_peak = next(
        (int(line.split()[1]) / 1024 for line in status.read_text().splitlines()
         if line.startswith("VmPeak:")),
        None,
    ) if status.exists() else None  # fmt: skip
    result = {"pairs": state.answered, "errors": state.errors, "peak_rss_mib": peak}
    result["peak_address_space_mib"] = vm_peak
    print(json.dumps(result | {"error_kinds": [e[:300] for e, _ in kinds.most_common(3)]}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="part", required=True)
    t = sub.add_parser("throughput", help="pairs/s by batch size")
    t.add_argument("--records", type=int, default=64)
    t.add_argument("--positions", type=int, default=16, help="activation positions per record")
    t.add_argument("--batch-sizes", default="1,4,16,64")
    t.add_argument("--max-new-tokens", type=int, default=4)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--oracle", default=None, help="oracle dir (default: toy world, else tiny)")
    m = sub.add_parser("memory", help="peak memory of a capped audit of a larger log")
    m.add_argument("--log-gib", type=float, default=4.0)
    m.add_argument("--cap-gib", type=float, default=2.0)
    m.add_argument("--positions", type=int, default=4096, help="positions per record")
    m.add_argument("--oracle-positions", type=int, default=64, help="last K read by the oracle")
    m.add_argument("--batch-size", type=int, default=32)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--work", default=None, help="directory for the log (kept and reused)")
    c = sub.add_parser("_child")
    for name in ("--logs", "--oracle", "--out"):
        c.add_argument(name, required=True)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--max-positions", type=int, default=None)
    args = parser.parse_args()
    {"throughput": throughput, "memory": memory, "_child": child}[args.part](args)


if __name__ == "__main__":
    main()
