"""Write logged activations (the format of :mod:`audit.logformat`): batched, sharded, resumable.

:class:`LogWriter` buffers whole conversations and commits a shard when the buffer holds
``shard_records`` records: tensors first (synced), then the index part (renamed into place),
then the manifest. Reopening a directory continues after its last committed shard, and
``done_conversations`` says which conversations need no capture again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from audit.logformat import (
    INDEX_SCHEMA,
    MANIFEST,
    STORAGE_DTYPES,
    LogManifest,
    ShardInfo,
)
from oracle.errors import OracleInputError

log = logging.getLogger(__name__)


@dataclass
class LogRecord:
    """One record to write: activations (n_positions, d_model) of a conversation at a layer."""

    record_id: str
    conversation_id: str
    layer: int
    activations: torch.Tensor
    positions: list[int]
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    metadata: str = "{}"  # a JSON object, as text


class LogWriter:
    """Append records to a log directory; ``close()`` marks it complete.

    A shard is committed when it holds ``shard_records`` records or ``shard_bytes`` bytes of
    tensors, whichever comes first (a conversation is never split across shards).

    >>> with LogWriter("logs/run1", model="m", layers=[1], d_model=64) as w:
    ...     w.add_conversation([LogRecord("c1@L1", "c1", 1, acts_PD, positions=[3, 4])])
    """

    def __init__(
        self,
        out: str | Path,
        model: str,
        layers: list[int],
        d_model: int,
        dtype: str = "float32",
        positions: str = "non_system",
        shard_records: int = 256,
        metadata: dict | None = None,
        shard_bytes: int = 256 * 2**20,
    ) -> None:
        if dtype not in STORAGE_DTYPES:
            raise OracleInputError(f"dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}")
        if shard_records < 1:
            raise OracleInputError("shard_records must be >= 1")
        self.path = Path(out)
        self.shard_records = shard_records
        self.shard_bytes = shard_bytes
        self._buffer: list[LogRecord] = []
        self._buffer_bytes = 0
        self.done_conversations: set[str] = set()
        self._record_ids: set[str] = set()
        fresh = LogManifest(
            model=model,
            layers=list(layers),
            d_model=d_model,
            dtype=dtype,
            positions=positions,
            metadata=dict(metadata or {}),
        )
        if (self.path / MANIFEST).is_file():
            self.manifest = self._resume(fresh)
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise OracleInputError(
                    f"{self.path} exists, is not empty and holds no {MANIFEST}; choose a new "
                    "directory"
                )
            self.manifest = fresh
        (self.path / "shards").mkdir(parents=True, exist_ok=True)
        (self.path / "index").mkdir(parents=True, exist_ok=True)
        self.manifest.complete = False
        self.manifest.save(self.path)

    def _resume(self, fresh: LogManifest) -> LogManifest:
        old = LogManifest.load(self.path)
        for key in ("model", "layers", "d_model", "dtype", "positions"):
            if getattr(old, key) != getattr(fresh, key):
                raise OracleInputError(
                    f"{self.path} was written with {key}={getattr(old, key)!r}, not "
                    f"{getattr(fresh, key)!r}; resume with the same settings or a new --out"
                )
        # index parts committed after the manifest's last update count too.
        known = {s.name for s in old.shards}
        for part in sorted((self.path / "index").glob("*.parquet")):
            if (
                part.stem not in known
                and (self.path / "shards" / f"{part.stem}.safetensors").is_file()
            ):
                rows = pq.read_metadata(part).num_rows
                old.shards.append(ShardInfo.named(part.stem, rows))
        for shard in old.shards:
            index = pq.read_table(self.path / shard.index, columns=["record_id", "conversation_id"])
            for row in index.to_pylist():
                self.done_conversations.add(row["conversation_id"])
                self._record_ids.add(row["record_id"])
        old.record_count = len(self._record_ids)
        old.conversation_count = len(self.done_conversations)
        log.info(
            "resuming %s: %d records in %d shards", self.path, old.record_count, len(old.shards)
        )
        return old

    def add_conversation(self, records: list[LogRecord]) -> None:
        """Buffer every record of one conversation (never split across shards)."""
        for r in records:
            if r.record_id in self._record_ids:
                raise OracleInputError(f"record id {r.record_id!r} is already in the log")
            self._record_ids.add(r.record_id)
        self._buffer.extend(records)
        self._buffer_bytes += sum(r.activations.numel() for r in records) * self._itemsize
        if records:
            self.done_conversations.add(records[0].conversation_id)
        if len(self._buffer) >= self.shard_records or self._buffer_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered records as one shard."""
        if not self._buffer:
            return
        name = f"{len(self.manifest.shards):05d}"
        shard = ShardInfo.named(name, len(self._buffer))
        storage = STORAGE_DTYPES[self.manifest.dtype]
        # clone: a conversation's layers are views of one capture tensor, and safetensors
        # refuses tensors that share memory.
        tensors = {r.record_id: r.activations.to(storage).clone() for r in self._buffer}
        from safetensors.torch import save_file

        tensors_path = self.path / shard.tensors
        tmp = tensors_path.with_name(tensors_path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": "oracle-activation-log"})
        _fsync_path(tmp)
        tmp.replace(tensors_path)
        table = pa.Table.from_pylist(
            [
                {
                    "record_id": r.record_id,
                    "conversation_id": r.conversation_id,
                    "layer": r.layer,
                    "positions": list(r.positions),
                    "token_ids": list(r.token_ids),
                    "text": r.text,
                    "metadata": r.metadata,
                }
                for r in self._buffer
            ],
            schema=INDEX_SCHEMA,
        )
        index_path = self.path / shard.index
        tmp = index_path.with_name(index_path.name + ".tmp")
        pq.write_table(table, tmp)
        _fsync_path(tmp)
        tmp.replace(index_path)
        self.manifest.shards.append(shard)
        self.manifest.record_count += len(self._buffer)
        self.manifest.conversation_count = len(self.done_conversations)
        self.manifest.save(self.path)
        self._buffer = []
        self._buffer_bytes = 0

    @property
    def _itemsize(self) -> int:
        return STORAGE_DTYPES[self.manifest.dtype].itemsize

    def close(self) -> LogManifest:
        """Commit what is buffered and mark the log complete."""
        self.flush()
        self.manifest.complete = True
        self.manifest.save(self.path)
        return self.manifest

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.flush()  # keep what was captured; a rerun resumes after it


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def conversation_text(messages: list[dict]) -> str:
    """A readable rendering of a conversation for the index (``role: content`` lines)."""
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)


@dataclass
class CaptureStats:
    conversations: int = 0
    records: int = 0
    skipped: list[str] = field(default_factory=list)  # "id: why" for each skipped conversation


def capture_conversations(
    engine,
    conversations: Iterable[dict],
    writer: LogWriter,
    layers: list[int],
    positions: str,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> CaptureStats:
    """Capture each ``{"id", "messages", ...}`` conversation with ``engine`` into ``writer``.

    Conversations already in the log are skipped (resume); extra keys become the records'
    metadata. A conversation the engine rejects is skipped with a warning, not fatal.
    ``progress(n)`` is called with the number of conversations handled in each batch.
    """
    from oracle.engines import CaptureRequest
    from oracle.inputs import TargetInput

    stats = CaptureStats()
    for batch in _batches(conversations, batch_size):
        todo: list[tuple[dict, TargetInput]] = []
        for conv in batch:
            cid = conv["id"]
            if cid in writer.done_conversations:
                continue
            try:
                todo.append((conv, TargetInput(messages=conv["messages"])))
            except OracleInputError as exc:
                _skip(stats, cid, str(exc))
        requests = [CaptureRequest(t, list(layers), positions) for _, t in todo]
        try:
            caps = engine.capture(requests) if requests else []
        except OracleInputError:
            caps = []  # one bad conversation fails the batch: retry one by one
            for conv, req in zip([c for c, _ in todo], requests, strict=True):
                try:
                    caps.append(engine.capture([req])[0])
                except OracleInputError as exc:
                    _skip(stats, conv["id"], str(exc))
                    caps.append(None)
        for (conv, _), cap in zip(todo, caps, strict=True):
            if cap is None:
                continue
            writer.add_conversation(records_of(conv, cap))
            stats.conversations += 1
            stats.records += len(cap.layers)
        if progress is not None:
            progress(len(batch))
    return stats


def records_of(conv: dict, cap) -> list[LogRecord]:
    """The records (one per layer) of one captured conversation."""
    import json

    extra = {k: v for k, v in conv.items() if k not in ("id", "messages")}
    meta = json.dumps(extra, default=str)
    text = conversation_text(conv["messages"])
    return [
        LogRecord(
            record_id=f"{conv['id']}@L{layer}",
            conversation_id=str(conv["id"]),
            layer=layer,
            activations=cap.activations[i],
            positions=list(cap.positions),
            token_ids=list(cap.token_ids),
            text=text,
            metadata=meta,
        )
        for i, layer in enumerate(cap.layers)
    ]


def _skip(stats: CaptureStats, cid: str, why: str) -> None:
    log.warning("skipping conversation %s: %s", cid, why)
    stats.skipped.append(f"{cid}: {why}")


def _batches(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
