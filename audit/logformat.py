"""The on-disk format of logged activations, and its streaming reader.

A log is a directory (documented in ``audit/README.md``)::

    LOGDIR/
      manifest.json                 model, layers, d_model, dtype, positions, record count,
                                    format version, and the list of committed shards
      shards/00000.safetensors      one tensor per record, keyed by record id: (n_positions, d_model)
      index/00000.parquet           one row per record: record_id, conversation_id, layer,
                                    positions, token_ids, text, metadata (JSON string)
      ...

A *record* is the activations of one conversation at one layer. A shard is committed when its
index part exists (the tensors file is written and synced first, the index renamed into place
last), so a reader never sees half a shard from a writer that was killed. The index parts are
plain Parquet: ``datasets.load_dataset("parquet", data_files="LOGDIR/index/*.parquet")`` reads
them too.

Reading is shard by shard: :meth:`ActivationLog.iter_records` opens one shard's tensors at a
time and loads one record's tensor at a time, so memory stays flat whatever the log's size.
A record that cannot be read (a truncated shard, a wrong shape, NaN, a missing field) comes back
as a :class:`Record` with ``error`` set rather than raising, so that an audit can go on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from oracle.errors import OracleInputError
from oracle.jsonio import read_json

log = logging.getLogger(__name__)

FORMAT_NAME = "oracle-activation-log"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORAGE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

INDEX_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("conversation_id", pa.string()),
        ("layer", pa.int32()),
        ("positions", pa.list_(pa.int32())),
        ("token_ids", pa.list_(pa.int32())),
        ("text", pa.string()),
        ("metadata", pa.string()),
    ]
)
REQUIRED_FIELDS = ("record_id", "conversation_id", "layer", "positions")


@dataclass
class ShardInfo:
    """One committed shard: its tensors file and index part (paths relative to the log)."""

    name: str
    tensors: str
    index: str
    records: int

    def __post_init__(self) -> None:
        # A manifest names files inside its log: nothing absolute, no way up, so that a log
        # (or a client that wrote one under a server's audit root) cannot make a reader open
        # files elsewhere. Symlinks out are refused when the log opens (ActivationLog).
        for what, rel in (("tensors", self.tensors), ("index", self.index)):
            if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
                raise OracleInputError(f"shard {self.name!r}: {what} path {rel!r} is not valid")
            parts = PurePosixPath(rel).parts
            if rel.startswith("/") or ".." in parts or ":" in parts[0]:
                raise OracleInputError(
                    f"shard {self.name!r}: {what} path {rel!r} leaves the log directory"
                )

    @classmethod
    def named(cls, name: str, records: int) -> ShardInfo:
        return cls(name, f"shards/{name}.safetensors", f"index/{name}.parquet", records)


def _shard_of(entry: object) -> ShardInfo:
    """One manifest entry as a :class:`ShardInfo`, or a clear error."""
    keys = ("name", "tensors", "index", "records")
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        raise OracleInputError(f"manifest shard entry {entry!r:.200} must have keys {keys}")
    if not isinstance(entry["records"], int) or entry["records"] < 0:
        raise OracleInputError(f"manifest shard entry {entry!r:.200}: records must be >= 0")
    return ShardInfo(**{k: entry[k] for k in keys})


@dataclass
class LogManifest:
    """``manifest.json``: what every record of the log shares."""

    model: str
    layers: list[int]
    d_model: int
    dtype: str = "float32"
    positions: str = "non_system"
    record_count: int = 0
    conversation_count: int = 0
    shards: list[ShardInfo] = field(default_factory=list)
    complete: bool = False
    metadata: dict = field(default_factory=dict)
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format != FORMAT_NAME:
            raise OracleInputError(f"manifest format is {self.format!r}, not {FORMAT_NAME!r}")
        if self.format_version > FORMAT_VERSION:
            raise OracleInputError(
                f"log format version {self.format_version} is newer than this toolkit reads "
                f"({FORMAT_VERSION})"
            )
        if self.dtype not in STORAGE_DTYPES:
            raise OracleInputError(
                f"manifest dtype {self.dtype!r} is not one of {sorted(STORAGE_DTYPES)}"
            )
        if not isinstance(self.d_model, int) or self.d_model < 1:
            raise OracleInputError(f"manifest d_model must be a positive integer: {self.d_model}")
        if not isinstance(self.shards, list):
            raise OracleInputError("manifest shards must be a list")
        self.shards = [s if isinstance(s, ShardInfo) else _shard_of(s) for s in self.shards]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, directory: Path) -> None:
        """Write atomically (temp file + rename), so a kill never leaves half a manifest."""
        write_atomic(directory / MANIFEST, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> LogManifest:
        path = directory / MANIFEST
        if not path.is_file():
            raise OracleInputError(f"{directory} is not an activation log: no {MANIFEST}")
        data = read_json(path, MANIFEST)
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("model", "layers", "d_model") if k not in data]
        if missing:
            raise OracleInputError(f"{path} lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Record:
    """One logged record. ``activations`` is (n_positions, d_model) float32, or None with
    ``error`` saying why the record cannot be used."""

    record_id: str
    conversation_id: str | None
    layer: int | None
    shard: str
    positions: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    metadata: dict = field(default_factory=dict)
    activations: torch.Tensor | None = None
    error: str | None = None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temp file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def fallback_id(shard: str, row: int) -> str:
    """Record id given to an index row whose own id is missing (so its error row is unique)."""
    return f"{shard}#{row}"


class ActivationLog:
    """A log directory opened for reading.

    >>> log = ActivationLog("logs/run1")
    >>> for record in log.iter_records():
    ...     acts = record.activations  # (n_positions, d_model), or None with record.error
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise OracleInputError(f"activation log {str(path)!r} is not a directory")
        self.manifest = LogManifest.load(self.path)
        self._confine()

    def _confine(self) -> None:
        """Refuse a manifest whose shard files resolve outside the log directory (symlinks)."""
        top = self.path.resolve()
        for shard in self.shards:
            for rel in (shard.tensors, shard.index):
                if not (self.path / rel).resolve().is_relative_to(top):
                    raise OracleInputError(
                        f"shard {shard.name!r}: {rel!r} resolves outside the log directory"
                    )

    @property
    def shards(self) -> list[ShardInfo]:
        return self.manifest.shards

    def read_index(self, shard: ShardInfo, columns: list[str] | None = None) -> list[dict]:
        """The index rows of one shard (all columns, or ``columns``); raises on a bad part."""
        # index parts are small: reader threads would only add per-thread malloc arenas.
        table = pq.read_table(self.path / shard.index, columns=columns, use_threads=False)
        return table.to_pylist()

    def record_ids(self, shard: ShardInfo) -> list[str]:
        """Record ids of one shard, with fallback ids for unreadable or id-less rows."""
        try:
            rows = self.read_index(shard, ["record_id"])
        except (OSError, pa.ArrowException):  # a corrupt index part: its records become errors
            return [fallback_id(shard.name, i) for i in range(shard.records)]
        return [r["record_id"] or fallback_id(shard.name, i) for i, r in enumerate(rows)]

    def iter_records(
        self,
        select: Callable[[str], bool] | None = None,
        load: bool = True,
        shards: list[ShardInfo] | None = None,
    ) -> Iterator[Record]:
        """Stream records shard by shard; ``select(record_id)`` skips records before loading.

        With ``load=False`` the tensors are not read (index fields only).
        """
        for shard in self.shards if shards is None else shards:
            yield from self._iter_shard(shard, select, load)

    def _iter_shard(
        self, shard: ShardInfo, select: Callable[[str], bool] | None, load: bool
    ) -> Iterator[Record]:
        try:
            rows = self.read_index(shard)
        except (OSError, pa.ArrowException) as exc:  # unreadable index: every record an error
            msg = f"index part {shard.index} is unreadable: {exc}"
            for i in range(shard.records):
                rid = fallback_id(shard.name, i)
                if select is None or select(rid):
                    yield Record(rid, None, None, shard.name, error=msg)
            return
        wanted = []
        for i, row in enumerate(rows):
            rid = row.get("record_id") or fallback_id(shard.name, i)
            if select is None or select(rid):
                wanted.append((rid, row))
        if not wanted:
            return
        if not load:
            for rid, row in wanted:
                yield self._record(rid, row, shard.name)
            return
        from safetensors import SafetensorError, safe_open

        try:
            handle = safe_open(str(self.path / shard.tensors), framework="pt")
        except (OSError, SafetensorError) as exc:  # a truncated or missing tensors file
            msg = f"shard {shard.tensors} is unreadable: {exc}"
            for rid, row in wanted:
                yield self._record(rid, row, shard.name, error=msg)
            return
        with handle:
            keys = set(handle.keys())
            for rid, row in wanted:
                record = self._record(rid, row, shard.name)
                if record.error is None:
                    record.activations, record.error = self._load(handle, keys, record)
                yield record

    def _record(self, rid: str, row: dict, shard: str, error: str | None = None) -> Record:
        missing = [k for k in REQUIRED_FIELDS if row.get(k) is None]
        if missing and error is None:
            error = f"record is missing field(s): {', '.join(missing)}"
        try:
            metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
        except (json.JSONDecodeError, TypeError):
            metadata = {"raw": row.get("metadata")}
        return Record(
            record_id=rid,
            conversation_id=row.get("conversation_id"),
            layer=row.get("layer"),
            shard=shard,
            positions=list(row.get("positions") or []),
            token_ids=list(row.get("token_ids") or []),
            text=row.get("text") or "",
            metadata=metadata if isinstance(metadata, dict) else {"value": metadata},
            error=error,
        )

    def _load(
        self, handle, keys: set[str], record: Record
    ) -> tuple[torch.Tensor | None, str | None]:
        if record.record_id not in keys:
            return None, f"no tensor for record {record.record_id!r} in its shard"
        from safetensors import SafetensorError

        try:
            acts_PD = handle.get_tensor(record.record_id)
        except (OSError, RuntimeError, SafetensorError) as exc:
            return None, f"tensor of record {record.record_id!r} is unreadable: {exc}"
        return validate_activations(acts_PD, self.manifest.d_model, len(record.positions))


def validate_activations(
    acts_PD: torch.Tensor, d_model: int, n_positions: int | None = None
) -> tuple[torch.Tensor | None, str | None]:
    """Check a record's tensor: shape (n_positions, d_model), finite. Returns (float32, None)
    when it is usable, else (None, the reason)."""
    if acts_PD.ndim != 2:
        return None, f"activations must be 2-D (n_positions, d_model), got {tuple(acts_PD.shape)}"
    if acts_PD.shape[1] != d_model:
        return None, f"activations have d_model {acts_PD.shape[1]}, the log says {d_model}"
    if acts_PD.shape[0] == 0:
        return None, "activations have no positions"
    if n_positions is not None and n_positions and acts_PD.shape[0] != n_positions:
        return None, (
            f"activations have {acts_PD.shape[0]} positions, the index lists {n_positions}"
        )
    acts_PD = acts_PD.float()
    if not torch.isfinite(acts_PD).all():
        return None, "activations contain NaN or infinite values"
    return acts_PD, None
