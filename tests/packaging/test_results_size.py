"""Results live in one folder, ``results/``, and stay small: no file over 5 MB, and no more
than 5 MB of weights in all (steering vectors and a few adapters of the experiments). A
world's models belong to its data folder (``data/<world>/``), not here."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
MB = 1_000_000
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")


def files() -> list[Path]:
    return [p for p in RESULTS.rglob("*") if p.is_file()]


def test_results_are_in_one_folder():
    assert RESULTS.is_dir() and len(files()) > 50
    for stale in ("evals/results", "evals/experiments/results"):
        assert not (REPO / stale).exists(), f"{stale}: results belong in results/"


def test_no_result_file_is_large():
    large = [f"{p.relative_to(REPO)}: {p.stat().st_size / MB:.1f} MB" for p in files()
             if p.stat().st_size > 5 * MB]  # fmt: skip
    assert not large, large


def test_weights_in_results_stay_under_a_few_mb():
    weights = [p for p in files() if p.name.endswith(WEIGHTS)]
    total = sum(p.stat().st_size for p in weights) / MB
    assert total <= 5.0, f"{total:.1f} MB of weights under results/: move them to a world's data"
