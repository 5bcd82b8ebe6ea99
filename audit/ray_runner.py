"""The audit on a Ray cluster: Ray Data reads the log index, a pool of engine actors answers.

The pipeline (one Ray Data dataset)::

    index/*.parquet --read_parquet--> (record_id, path) --PendingPairs--> pairs not yet written
        --repartition(batch_size)--> --map_batches(AuditWorker, ActorPoolStrategy(actors))-->
        each batch: records read shard by shard in the worker, answered by its engine,
        written as one Parquet part in OUT/parts/ --> the driver counts the batches done

The driver then moves the parts into ``OUT/results.jsonl`` (each pair once) and the caller
writes ``results.parquet``, ``summary.json`` and ``report.html`` as after a local audit
(:func:`audit.finish.finish`). A killed actor is restarted by Ray and its batch retried; a
killed driver leaves whole parts behind, and the same command run again moves them into
``results.jsonl`` first and answers only the pairs still missing. When the pool takes every
CPU of the cluster, the pending pairs are materialised (ids only, never tensors) before it
starts, since the read tasks would wait for a CPU for ever; else the actors load their
engines while the index is read.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from audit.logformat import ActivationLog, ShardInfo
from audit.parts import PARTS, move_parts
from audit.questions import Question
from audit.ray_config import RayConfig
from audit.ray_worker import AuditWorker, PendingPairs, WorkerSpec
from audit.runner import AuditProgress, AuditSpec, count_pairs, open_audit
from oracle.errors import OracleConfigError, OracleError, OracleInputError

log = logging.getLogger(__name__)


@contextmanager
def ray_session(config: RayConfig) -> Iterator[None]:
    """Ray for the audit: the one already initialised in this process, the cluster at
    ``ray_address``, or a local one started with ``ray_cpus`` CPUs and stopped afterwards."""
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network at run time
    options: dict[str, Any] = {"runtime_env": config.ray_runtime_env}
    if config.local:
        options.update(address="local", num_cpus=config.ray_cpus, include_dashboard=False)
    else:
        options.update(address=config.ray_address)
    log.info("starting Ray (%s)", "a local Ray" if config.local else config.ray_address)
    try:
        ray.init(**options)
    except ConnectionError as exc:
        if config.local or os.environ.get("RAY_AUTH_MODE"):
            raise
        raise OracleInputError(
            f"cannot join the Ray cluster at {config.ray_address} ({exc}). A cluster with "
            "token authentication (`ray start` turns it on where a token exists) is joined "
            "only with RAY_AUTH_MODE=token set and its token in ~/.ray/auth_token or "
            "RAY_AUTH_TOKEN"
        ) from exc
    try:
        yield
    finally:
        ray.shutdown()


def _ray_rows(logs: ActivationLog, shard: ShardInfo) -> int | None:
    """Rows of the shard's index part if Ray can read it as is (its footer readable and no
    null record id), else None: the driver reads the ids of such a part itself, with the
    fallback ids the local audit gives them, and the workers make them error rows."""
    try:
        meta = pq.read_metadata(logs.path / shard.index)
        col = meta.schema.names.index("record_id")
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(col).statistics
            if stats is None or stats.null_count:
                return None
    except (OSError, ValueError, pa.ArrowException):
        return None
    return meta.num_rows


def audit_total(
    logs: ActivationLog, questions: Sequence[Question], shard: tuple[int, int] = (0, 1)
) -> int:
    """The pairs the audit covers: from the index parts' footers (no ids read) for a whole
    log, as the local audit counts them for a part of one (``shard``)."""
    if shard != (0, 1):
        return count_pairs(logs, questions, shard)
    records = 0
    for s in logs.shards:
        rows = _ray_rows(logs, s)
        records += len(logs.record_ids(s)) if rows is None else rows
    return len(questions) * records


def pending_dataset(
    logs: ActivationLog,
    questions: Sequence[Question],
    done: set[tuple[str, str]],
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 16,
    materialize: bool = False,
) -> ray.data.Dataset:
    """The pairs still to answer: ``record_id``, ``shard``, ``question`` (an index).

    The log's index parts are read as one Ray dataset (``record_id`` and the part's
    ``path``), turned into pending pairs in blocks of ``batch_size`` (one actor task each,
    so that every actor of the pool gets work). ``materialize`` computes them before
    returning (ids only, a few dozen bytes a pair): needed when the actor pool takes every
    CPU of the cluster, which would leave the read tasks waiting for ever.
    """
    regular = [s for s in logs.shards if _ray_rows(logs, s) is not None]
    irregular = [
        {"record_id": rid, "path": s.index}
        for s in logs.shards
        if s not in regular
        for rid in logs.record_ids(s)
    ]
    shard_of = {str(logs.path / s.index): s.name for s in logs.shards}
    shard_of.update({s.index: s.name for s in logs.shards})
    shard_of.update({os.path.basename(s.index): s.name for s in logs.shards})
    expand = PendingPairs([q.text for q in questions], shard_of, frozenset(done), shard)
    parts = []
    if regular:
        paths = [str(logs.path / s.index) for s in regular]
        parts.append(
            ray.data.read_parquet(paths, include_paths=True).select_columns(["record_id", "path"])
        )
    if irregular:
        parts.append(ray.data.from_items(irregular))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    pending = ds.map_batches(expand, batch_format="numpy")
    pending = pending.repartition(target_num_rows_per_block=batch_size)
    return pending.materialize() if materialize else pending


def check_pool_fits(config: RayConfig) -> float:
    """Refuse a pool the cluster cannot hold (Ray would wait for it for ever); returns the
    CPUs the pool leaves free."""
    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0), res.get("GPU", 0)
    if config.ray_actors * config.ray_threads > cpus:
        raise OracleInputError(
            f"{config.ray_actors} actors x {config.ray_threads} threads need "
            f"{config.ray_actors * config.ray_threads} CPUs; the Ray cluster has {cpus:g}"
        )
    if config.ray_actors * config.ray_gpus > gpus:
        raise OracleInputError(
            f"{config.ray_actors} actors x {config.ray_gpus:g} GPUs exceed the cluster's {gpus:g}"
        )
    return cpus - config.ray_actors * config.ray_threads


def run_audit_ray(
    logs: ActivationLog,
    questions: Sequence[Question],
    out: str | Path,
    config: RayConfig,
    engine: str = "hf",
    engine_options: dict[str, Any] | None = None,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 16,
    max_new_tokens: int = 16,
    max_positions: int | None = None,
    spec: AuditSpec | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[AuditProgress], None] | None = None,
) -> AuditProgress:
    """Audit ``logs`` on Ray; ``OUT/results.jsonl`` ends with every pair once, as after
    :func:`audit.runner.run_audit` (which this mirrors, option for option).

    ``engine_options`` go to :func:`oracle.engines.create_engine` in every actor (target,
    oracle, dtype, device, ...): paths in them must be readable from every worker, as must
    the log and ``out``.
    """
    out = Path(out)
    results = open_audit(
        logs, questions, out, shard, batch_size, max_new_tokens, max_positions, spec
    )
    parts = out / PARTS
    done = results.done_pairs()
    worker = WorkerSpec(
        str(logs.path.resolve()), list(questions), str(parts.resolve()), engine,
        dict(engine_options or {}), max_new_tokens, max_positions, config.ray_threads,
    )  # fmt: skip
    state = AuditProgress(audit_total(logs, questions, shard), len(done))
    if on_start is not None:
        on_start(state)
    if state.total > len(done):  # else no Ray at all
        with ray_session(config):
            _answer(logs, questions, done, shard, batch_size, config, worker, state, progress)
    move_parts(parts, results)
    log.info(
        "ray audit of %s: %d pairs this run (%d errors), %d before",
        logs.path, state.answered, state.errors, state.done_before,
    )  # fmt: skip
    return state


def _answer(logs, questions, done, shard, batch_size, config, worker, state, progress) -> None:
    """Run the pipeline on the Ray of this session, counting the batches as they end."""
    ray.data.DataContext.get_current().enable_progress_bars = False  # the caller shows one
    spare = check_pool_fits(config)
    pending = pending_dataset(logs, questions, done, shard, batch_size, spare < 1)
    answered = pending.map_batches(
        AuditWorker,
        fn_constructor_args=(worker,),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=config.ray_actors),
        num_cpus=config.ray_threads,
        num_gpus=config.ray_gpus or None,
    )
    try:
        for batch in answered.iter_batches(batch_size=None, batch_format="numpy"):
            n = int(batch["pairs"].sum())
            state.answered += n
            state.errors += int(batch["errors"].sum())
            if progress is not None:
                progress(n)
    except Exception as exc:
        error = input_error(exc)
        if error is None:
            raise
        raise error from None


def input_error(exc: BaseException) -> OracleError | None:
    """The toolkit's own error (a log of another width, a missing oracle...) inside what Ray
    raised for a worker, so that the command line reports it as it would locally."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OracleError):
            return e
        stack += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    found = re.search(r"(Oracle\w*Error): (.+)", str(exc))
    if found is None:
        return None
    kind = OracleConfigError if found.group(1) == "OracleConfigError" else OracleInputError
    return kind(found.group(2).strip())
