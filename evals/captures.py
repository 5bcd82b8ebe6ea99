"""Target activations of suite items, captured once and shared between suites (and, for train
items, cached on disk)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from evals.probe import pooled
from evals.suite_format import SuiteItem
from oracle.engines.base import CaptureRequest, Engine
from oracle.inputs import TargetInput

CAPTURE_CHUNK = 256


def target_input(item: SuiteItem, conversation: list[dict[str, str]] | None = None) -> TargetInput:
    """What the target reads for ``item`` (or for ``conversation`` in its place)."""
    if item.text is not None and conversation is None:
        return TargetInput(prompt=item.text)
    return TargetInput(
        messages=conversation or item.conversation,
        add_generation_prompt=item.add_generation_prompt,
    )


def input_key(item: SuiteItem, span: str | None) -> str:
    """Items with equal keys read the same activations."""
    return json.dumps([item.conversation, item.text, item.add_generation_prompt, span])


@dataclass
class Captured:
    acts: torch.Tensor | None  # (n_positions, D); None for train items (pooled only)
    token_ids: list[int]
    positions: list[int]
    pooled: tuple[np.ndarray, np.ndarray]  # (mean, last), each (D,)


def feature_cache_dir() -> Path:
    """``$ORACLE_CACHE_DIR/eval-features``, else ``~/.cache/activation-oracle/eval-features``."""
    root = os.environ.get("ORACLE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "activation-oracle"
    return base / "eval-features"


class Captures:
    """Captures at one layer, each target input captured once and shared between suites.

    Test items keep their activation sets; train items (there may be tens of thousands) keep
    only their pooled features and the tokens of their read span. With ``cache_dir``, train
    features are also saved there in chunks (``.npz``, keyed by the target's fingerprint,
    the layer and the chunk's inputs), so that a long run resumes and a rerun of the report
    captures nothing again.
    """

    def __init__(
        self, engine: Engine, layer: int, progress: bool = False, cache_dir: Path | None = None
    ) -> None:
        self.engine, self.layer, self.progress = engine, layer, progress
        self.done: dict[str, Captured] = {}
        self.cache_dir = cache_dir
        cfg = engine.config
        ident = [cfg.base_model, cfg.fingerprint, engine.target_name, layer]
        self.prefix = json.dumps(ident, sort_keys=True, default=str)

    def get(self, item: SuiteItem, span: str | None = None) -> Captured:
        return self.done[input_key(item, span or item.read_span)]

    def _capture(self, todo: dict[str, SuiteItem], keys: list[str], span, keep: bool) -> None:
        requests = [
            CaptureRequest(target_input(todo[k]), [self.layer], span or todo[k].read_span)
            for k in keys
        ]
        for k, cap in zip(keys, self.engine.capture(requests), strict=True):
            a = cap.activations[0]
            if keep:
                self.done[k] = Captured(a, cap.token_ids, cap.positions, pooled(a))
            else:  # only the read span's own tokens are kept
                window = [cap.token_ids[p] for p in cap.positions]
                self.done[k] = Captured(None, window, list(range(len(window))), pooled(a))

    def _cached(self, todo: dict[str, SuiteItem], keys: list[str], span) -> None:
        digest = hashlib.sha256("\n".join([self.prefix, *keys]).encode()).hexdigest()[:32]
        path = self.cache_dir / f"{digest}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                mean, last, ids, ends = z["mean"], z["last"], z["window_ids"], z["window_ends"]
            starts = np.concatenate([[0], ends[:-1]])
            for i, k in enumerate(keys):
                window = ids[starts[i] : ends[i]].tolist()
                self.done[k] = Captured(None, window, list(range(len(window))), (mean[i], last[i]))
            return
        self._capture(todo, keys, span, keep=False)
        got = [self.done[k] for k in keys]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            mean=np.stack([c.pooled[0] for c in got]),
            last=np.stack([c.pooled[1] for c in got]),
            window_ids=np.asarray([t for c in got for t in c.token_ids], dtype=np.int64),
            window_ends=np.cumsum([len(c.token_ids) for c in got]).astype(np.int64),
        )
        tmp.replace(path)

    def run(self, items: Sequence[SuiteItem], span: str | None = None, keep: bool = True) -> None:
        """Capture every item not captured yet (``keep``: keep the activation sets)."""
        todo: dict[str, SuiteItem] = {}
        for item in items:
            key = input_key(item, span or item.read_span)
            have = self.done.get(key)
            if key not in todo and (have is None or (keep and have.acts is None)):
                todo[key] = item
        keys = list(todo)
        chunks = range(0, len(keys), CAPTURE_CHUNK)
        for s in tqdm(chunks, desc="capture", disable=not self.progress or len(chunks) < 2):
            chunk = keys[s : s + CAPTURE_CHUNK]
            if keep or self.cache_dir is None:
                self._capture(todo, chunk, span, keep)
            else:
                self._cached(todo, chunk, span)


def visible_text(item: SuiteItem, cap: Captured, tokenizer) -> str:
    """What a reader without the activations sees (see ``SuiteItem.visible_text``)."""
    if item.visible_text is not None or item.answer_type != "text":
        return item.transcript()
    window = [cap.token_ids[p] for p in cap.positions]
    return tokenizer.decode(window) if tokenizer is not None else " ".join(map(str, window))
