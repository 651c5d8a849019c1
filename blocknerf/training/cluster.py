"""Training many blocks: one dask task per block, on a local cluster or a real dask scheduler.

The command that trains is the only process that publishes: workers train a block (resuming from
its checkpoint if one exists), write it as a new unpublished version and return; the driver
publishes each version as its task completes (``blocknerf train``), or leaves publishing to the
caller, which publishes them all at once (``blocknerf update``). A worker that dies mid-block has
its task re-run elsewhere by the scheduler, and the re-run resumes from the block's last
checkpoint. A block that fails for a real reason is reported while the others finish.

Without a scheduler address, a ``distributed.LocalCluster`` of worker processes is started; with
one, ``distributed.Client(address)`` joins an existing cluster (``dask scheduler`` + ``dask worker``,
dask-jobqueue, dask-kubernetes, ...). ``in_process=True`` trains sequentially without dask.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blocknerf.errors import ConfigError

PROGRESS_TOPIC = "blocknerf-progress"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where and how in parallel blocks train."""

    workers: int = 0
    """Worker processes of the local cluster; 0: as many as the cores allow (cores // threads)."""
    threads_per_worker: int = 0
    """Torch threads per worker; 0: the cores divided among the workers (at least 1)."""
    scheduler: str | None = None
    """Address of an existing dask scheduler (e.g. tcp://head:8786); None starts a local cluster."""
    in_process: bool = False
    """Train blocks one after another in this process, without dask."""
    dashboard: bool = True
    """Serve the dask dashboard of a local cluster (its address is printed)."""
    allowed_failures: int = 3
    """Times a block's task may lose its worker (crash, kill) before the block is reported failed.
    Applies to the local cluster; an existing scheduler keeps its own setting
    (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES`` where it is started)."""

    def validate(self) -> None:
        if self.workers < 0 or self.threads_per_worker < 0:
            raise ValueError("workers and threads_per_worker must be >= 0")

    def local_layout(self) -> tuple[int, int]:
        """(workers, threads per worker) for a local cluster on this machine."""
        cores = os.cpu_count() or 1
        threads = self.threads_per_worker or (max(1, cores // self.workers) if self.workers else 1)
        workers = self.workers or max(1, cores // threads)
        return workers, threads


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to train one block (small and picklable; data comes from the store)."""

    store_url: str
    block_id: str
    model: Any
    train: Any
    far_m: float
    threads: int
    records: int | None = None
    """Records revision (capture record + plan) to train from; None: the published one."""
    warm_start: int | None = None
    """Version of the block to start from (an update); None: from scratch."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Training settings of this run only, e.g. an update's steps (not part of the fingerprint)."""
    record: Mapping[str, Any] = field(default_factory=dict)
    """Extra attributes of the version written (reason, caused_by)."""


@dataclass
class TrainReport:
    """Outcome of a training run over several blocks."""

    trained: dict[str, int] = field(default_factory=dict)
    """Block id -> new version (published, unless the run was asked not to publish)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Block id -> why it was not trained (e.g. up to date)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Block id -> the error that stopped it."""
    stats: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    """Per block: worker, start and end (seconds since the run began)."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


ProgressSink = Callable[[dict[str, Any]], None]
"""Receives progress events: {"event": "start"|"update"|"finish", "block": id, ...}."""


def run_block_job(job: BlockJob, sink: ProgressSink | None = None) -> dict[str, Any]:
    """Train one block from its job description (runs in a worker or in-process)."""
    import torch

    from blocknerf.store import BlockStore
    from blocknerf.training.trainer import train_block

    if job.threads:
        torch.set_num_threads(job.threads)
    store = BlockStore.open(job.store_url, writable=True)
    spec = store.read_plan(job.records).block(job.block_id)
    capture = store.read_capture(job.records)
    started = time.time()
    result = train_block(
        spec, capture, job.model, job.train, store, far_m=job.far_m, progress=_EventProgress(sink),
        warm_start=job.warm_start, overrides=job.overrides, record=job.record,
    )
    return {"block": job.block_id, "version": result.version, "stats": dict(result.stats), "started": started,
            "ended": time.time(), "worker": _worker_name()}


def blocks_to_train(
    store: Any, block_ids: Sequence[str], model_cfg: Any, train_cfg: Any, *, force: bool, records: int | None = None
) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """Split the requested blocks into (to train, skipped with reason, finished-but-unpublished).

    A block is up to date when its published version was trained from the same fingerprint
    (region, training frames, settings) under the plan of ``records`` (default: the published
    records revision). A complete unpublished version with that fingerprint (a run that stopped
    between writing and publishing) is published rather than retrained.
    """
    from blocknerf.training.trainer import training_fingerprint

    plan, manifest = store.read_plan(records), store.manifest()
    held_out = {f.id for f in store.read_capture(records).frames if not f.is_train}
    far = plan.far_m
    todo, skipped, recover = [], {}, {}
    for block_id in block_ids:
        spec = plan.block(block_id)
        fp = training_fingerprint(spec, model_cfg, train_cfg, far, held_out)
        published = manifest.version_of(block_id)
        versions = store.versions(block_id)
        if not force and published is not None:
            info = next((v for v in versions if v.version == published), None)
            if info is not None and info.attrs.get("fingerprint") == fp:
                skipped[block_id] = f"up to date (v{published})"
                continue
        pending = [v for v in versions if v.version != published and v.attrs.get("fingerprint") == fp]
        if not force and pending and (published is None or pending[-1].version > published):
            recover[block_id] = pending[-1].version
            continue
        todo.append(block_id)
    return todo, skipped, recover


def train_blocks(
    store_url: str,
    block_ids: Sequence[str] | None,
    model_cfg: Any,
    train_cfg: Any,
    cluster_cfg: ClusterConfig,
    *,
    force: bool = False,
    sink: ProgressSink | None = None,
    on_cluster: Callable[[str, Any], None] | None = None,
    records: int | None = None,
    warm_start: Mapping[str, int] | None = None,
    overrides: Mapping[str, Any] | None = None,
    record: Mapping[str, Mapping[str, Any]] | None = None,
    publish: bool = True,
) -> TrainReport:
    """Train the given blocks (all when None) of a store and publish each as it finishes.

    ``sink`` receives progress events from every block; ``on_cluster(kind, info)`` hears about
    the cluster (``"dashboard"`` with its address, ``"workers"`` with their count).

    For updates: ``records`` trains from an unpublished records revision; ``warm_start`` maps
    blocks to the version each starts from; ``overrides`` are training settings of every run that
    do not enter the blocks' fingerprints (e.g. ``{"steps": 500}``); ``record``
    gives per block extra attributes of its new version (default ``{"reason": "train"}``); with
    ``publish=False`` nothing is published and ``TrainReport.trained`` lists the versions
    written (or found finished), for the caller to publish together.
    """
    from blocknerf.errors import StoreError
    from blocknerf.store import BlockStore

    began = time.time()
    store = BlockStore.open(store_url, writable=True)
    plan = store.read_plan(records)
    ids = list(block_ids) if block_ids else list(plan.ids)
    unknown = [b for b in ids if b not in plan.ids]
    if unknown:
        raise StoreError(store_url, f"no block {', '.join(unknown)} in the plan (blocks: {', '.join(plan.ids)})")
    report = TrainReport()
    todo, report.skipped, recover = blocks_to_train(store, ids, model_cfg, train_cfg, force=force, records=records)
    for block_id, version in recover.items():
        if publish:
            store.publish({block_id: version})
        report.trained[block_id] = version

    def make_job(block_id: str, threads: int) -> BlockJob:
        return BlockJob(
            store_url, block_id, model_cfg, train_cfg, plan.far_m, threads, records=records,
            warm_start=(warm_start or {}).get(block_id), overrides=dict(overrides or {}),
            record=dict((record or {}).get(block_id, {"reason": "train"})),
        )

    if todo:
        if cluster_cfg.in_process:
            jobs = [make_job(b, cluster_cfg.threads_per_worker or 0) for b in todo]
            _run_in_process(store, jobs, report, sink, began, publish)
        else:
            _run_on_dask(store, todo, make_job, cluster_cfg, report, sink, on_cluster, began, publish)
    report.seconds = time.time() - began
    return report


def _record(store: Any, report: TrainReport, out: Mapping[str, Any], began: float, publish: bool) -> None:
    block_id = out["block"]
    if publish:
        store.publish({block_id: out["version"]})
    report.trained[block_id] = out["version"]
    report.stats[block_id] = out["stats"]
    report.timeline.append(
        {"block": block_id, "worker": out["worker"], "start_s": round(out["started"] - began, 3), "end_s": round(out["ended"] - began, 3)}
    )


def _run_in_process(store: Any, jobs: list[BlockJob], report: TrainReport, sink: ProgressSink | None, began: float, publish: bool) -> None:
    from blocknerf.errors import BlockNerfError

    for job in jobs:
        try:
            out = run_block_job(job, sink)
        except BlockNerfError as exc:
            report.failed[job.block_id] = str(exc)
            if sink is not None:
                sink({"event": "failed", "block": job.block_id, "error": str(exc)})
            continue
        _record(store, report, out, began, publish)


def _run_on_dask(
    store: Any,
    todo: list[str],
    make_job: Callable[[str, int], BlockJob],
    cfg: ClusterConfig,
    report: TrainReport,
    sink: ProgressSink | None,
    on_cluster: Callable[[str, Any], None] | None,
    began: float,
    publish: bool,
) -> None:
    import dask
    from distributed import Client, LocalCluster, as_completed

    with dask.config.set({"distributed.scheduler.allowed-failures": cfg.allowed_failures}):
        if cfg.scheduler:
            cluster = None
            try:
                client = Client(cfg.scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(None, f"cannot reach the dask scheduler at {cfg.scheduler} ({_one_line(exc)})") from None
            threads = cfg.threads_per_worker or 0  # 0: keep each worker's own torch default
        else:
            workers, threads = cfg.local_layout()
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,  # one block at a time per worker; torch threads do the rest
                processes=True,
                dashboard_address=":0" if cfg.dashboard else None,
                silence_logs=logging.ERROR,
            )
            client = Client(cluster)
        try:
            if on_cluster is not None:
                if cfg.dashboard or cfg.scheduler:
                    on_cluster("dashboard", client.dashboard_link)
                on_cluster("workers", len(client.scheduler_info().get("workers", {})))
            if sink is not None:
                client.subscribe_topic(PROGRESS_TOPIC, lambda event: sink(event[1]))
            futures = {
                client.submit(_dask_task, make_job(b, threads), key=f"train-{b}-{time.time_ns()}", pure=False): b
                for b in todo
            }
            for future in as_completed(futures):
                block_id = futures[future]
                try:
                    out = future.result()
                except Exception as exc:  # noqa: BLE001 - a block's failure must not stop the others
                    report.failed[block_id] = _one_line(exc)
                    if sink is not None:
                        sink({"event": "failed", "block": block_id, "error": report.failed[block_id]})
                    continue
                _record(store, report, out, began, publish)
        finally:
            if sink is not None:
                try:
                    client.unsubscribe_topic(PROGRESS_TOPIC)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
            client.close()
            if cluster is not None:
                cluster.close()


def _dask_task(job: BlockJob) -> dict[str, Any]:
    """The task a dask worker runs: train one block, streaming progress events to the client."""
    from distributed import get_worker

    worker = get_worker()

    def sink(event: dict[str, Any]) -> None:
        worker.log_event(PROGRESS_TOPIC, event)

    return run_block_job(job, sink)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"pid{os.getpid()}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if not first or type(exc).__module__ != "blocknerf.errors" else first


class _EventProgress:
    """Adapts trainer progress calls to event dicts for a sink (rate-limited updates)."""

    def __init__(self, sink: ProgressSink | None, min_interval_s: float = 1.0) -> None:
        self.sink = sink
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._lock = threading.Lock()

    def start(self, block_id: str, total_steps: int, resumed_from: int) -> None:
        if self.sink:
            self.sink({"event": "start", "block": block_id, "total": total_steps, "resumed_from": resumed_from, "worker": _worker_name()})

    def update(self, block_id: str, step: int, metrics: Mapping[str, float]) -> None:
        now = time.monotonic()
        if self.sink and now - self._last >= self.min_interval_s:
            self._last = now
            self.sink({"event": "update", "block": block_id, "step": step, **{k: float(v) for k, v in metrics.items()}})

    def finish(self, block_id: str, stats: Mapping[str, Any]) -> None:
        if self.sink:
            self.sink({"event": "finish", "block": block_id, **{k: v for k, v in stats.items() if isinstance(v, (int, float, str))}})


__all__ = ["BlockJob", "ClusterConfig", "TrainReport", "blocks_to_train", "run_block_job", "train_blocks"]
