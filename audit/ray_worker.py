"""What runs inside the Ray workers of a distributed audit (plain Python: no Ray import).

- :class:`PendingPairs` turns rows of the log index (``record_id`` and the index part's
  ``path``) into the (record, question) pairs still to answer: ``record_id``, ``shard``,
  ``question`` (an index into the audit's questions).
- :class:`AuditWorker` is the actor: it holds one engine (``hf`` or ``vllm``, created by
  :func:`oracle.engines.create_engine` and used only through the
  :class:`~oracle.engines.Engine` interface), reads each batch's records shard by shard from
  the log (:meth:`audit.logformat.ActivationLog.iter_records`, one shard file open at a time),
  answers the batch as the local audit does (:func:`audit.runner.answer_pairs`: bad records
  and failing pairs become error rows), and writes its rows as one Parquet part
  (:func:`audit.parts.write_part`) before it reports the batch done.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.logformat import ActivationLog, Record, ShardInfo
from audit.parts import write_part
from audit.questions import Question
from audit.runner import answer_pairs, in_shard

log = logging.getLogger(__name__)

# Columns of the dataset of pending pairs.
PAIR_COLUMNS = ("record_id", "shard", "question")


@dataclass
class PendingPairs:
    """Map index rows to the pairs not yet answered (a Ray Data ``map_batches`` function).

    ``shard_of`` maps an index part's path (as Ray reports it) to its shard's name; ``done``
    holds the (record_id, question text) pairs already written.
    """

    questions: list[str]
    shard_of: dict[str, str]
    done: frozenset[tuple[str, str]] = frozenset()
    shard: tuple[int, int] = (0, 1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, shards, qs = [], [], []
        for rid, path in zip(batch["record_id"], batch["path"], strict=True):
            if not rid or not in_shard(rid, self.shard):
                continue  # null ids never get here: the driver reads such parts itself
            name = self.shard_of.get(path) or self.shard_of[os.path.basename(path)]
            for k, q in enumerate(self.questions):
                if (rid, q) not in self.done:
                    ids.append(rid)
                    shards.append(name)
                    qs.append(k)
        return {
            "record_id": np.array(ids, dtype=object),
            "shard": np.array(shards, dtype=object),
            "question": np.array(qs, dtype=np.int64),
        }


@dataclass
class WorkerSpec:
    """What every actor of one audit is built from (small, sent to each actor)."""

    logs: str
    questions: list[Question]
    parts: str
    engine: str = "hf"
    engine_options: dict[str, Any] = field(default_factory=dict)
    max_new_tokens: int = 16
    max_positions: int | None = None
    threads: int = 1


class AuditWorker:
    """One engine answering batches of pending pairs; each batch ends as one result part."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from oracle.engines import create_engine
        from oracle.errors import OracleInputError

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.logs = ActivationLog(spec.logs)
        self.engine = create_engine(spec.engine, **spec.engine_options)
        if self.logs.manifest.d_model != self.engine.d_model:
            self.engine.close()
            raise OracleInputError(
                f"the log holds activations of size {self.logs.manifest.d_model} "
                f"({self.logs.manifest.model}); the oracle reads size {self.engine.d_model}"
            )
        log.info("audit worker %d ready: engine %s", os.getpid(), spec.engine)

    def _shard(self, name: str) -> ShardInfo:
        shards = {s.name: s for s in self.logs.shards}
        if name not in shards:  # committed after this worker opened the log
            self.logs = ActivationLog(self.spec.logs)
            shards = {s.name: s for s in self.logs.shards}
        return shards[name]

    def records(self, wanted: dict[str, list[str]]) -> dict[str, Record]:
        """The records named in ``wanted`` ({shard name: record ids}), read shard by shard."""
        out: dict[str, Record] = {}
        for name, ids in wanted.items():
            keep = set(ids)
            for record in self.logs.iter_records(keep.__contains__, shards=[self._shard(name)]):
                acts = record.activations
                cap = self.spec.max_positions
                if cap is not None and acts is not None and acts.shape[0] > cap:
                    record.activations = acts[-cap:].clone()
                out[record.record_id] = record
            for rid in keep - out.keys():
                out[rid] = Record(rid, None, None, name, error="record not found in its shard")
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted: dict[str, list[str]] = defaultdict(list)
        for rid, shard in zip(batch["record_id"], batch["shard"], strict=True):
            wanted[shard].append(rid)
        records = self.records(wanted)
        questions = self.spec.questions
        pairs = [
            (records[rid], questions[int(k)])
            for rid, k in zip(batch["record_id"], batch["question"], strict=True)
        ]
        rows = answer_pairs(self.engine, pairs, self.spec.max_new_tokens)
        write_part(Path(self.spec.parts), rows)
        errors = sum(1 for r in rows if r["error"])
        return {"pairs": np.array([len(rows)]), "errors": np.array([errors])}

    def __del__(self) -> None:  # Ray Data deletes the UDF when the pool shuts down
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
