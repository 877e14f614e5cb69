"""The batch job, files in and files out: what ``jaxstyle batch`` does, usable from Python.

The pairs come from a manifest (:mod:`.manifest`) or from every content x every style of two
folders; this process takes its share of them (all, or its part of a ``--distributed`` run,
:mod:`.distributed`); the batch size is given or picked from memory (:mod:`jaxstyle.engine.memory`),
and the pairs run to their outputs with a report and resume (:func:`.pairs.run_pairs`). In a
multi-process run, a process that dies stops the others within seconds, and process 0 merges
the reports.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import jax

from jaxstyle.config import StyleConfig
from jaxstyle.engine import memory
from jaxstyle.engine.planner import PLAN_SHARE, plan_evaluation
from jaxstyle.engine.sharding import batch_mesh
from jaxstyle.io import images, plot, storage
from jaxstyle.jobs import distributed, live, manifest
from jaxstyle.jobs.network import load_network
from jaxstyle.jobs.pairs import merge_reports, run_pairs

EXIT_FAILED = 2  # the statuses a process of a multi-process run leaves with (as the CLI's)
EXIT_INTERRUPTED = 130


@dataclasses.dataclass(frozen=True)
class BatchJob:
    """out_dir: a folder or URL for the outputs and report.json. manifest, or contents and styles
    (folders): the pairs. size: longest side of every output; style_size: of the style images.
    batch_size: pairs optimised together, or "auto". overwrite: redo pairs whose output exists.
    plot: each output's loss curves beside it. claim_timeout: seconds after which another run's
    claim on a pair is stale. distributed (with coordinator, num_processes, process_id): take this
    process's share of a multi-host run. weights, preprocessing, pooling: the network. preview:
    serve the live page on this port (0: any free one) of ``preview_host``: the batch being worked
    on (its first pair's image), the last few finished pairs; stop (the report is written, the rest
    stays pending for a re-run), a snapshot, the weights for the rest of the run. block_size: as
    :class:`~jaxstyle.jobs.single.SingleJob`'s; a blocked run takes one pair at a time."""

    out_dir: str
    manifest: str | None = None
    contents: str | None = None
    styles: str | None = None
    config: StyleConfig = StyleConfig()
    size: int = 512
    style_size: int | None = None
    batch_size: int | str = "auto"
    overwrite: bool = False
    plot: bool = False
    claim_timeout: float = 60.0
    distributed: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    weights: str | None = None
    preprocessing: str | None = None
    pooling: str = "max"
    preview: int | None = None
    preview_host: str = "127.0.0.1"
    block_size: int | str | None = "auto"


def run_batch_job(job: BatchJob, *, on_pair: Callable[[dict], None] = lambda record: None,
                  on_share: Callable[[int], None] = lambda pairs: None,
                  log: Callable[[str], None] = lambda message: None,
                  notify: Callable[[str], None] = lambda message: None, notes: tuple[str, ...] = ()) -> dict:
    """Run ``job``; returns the report (``report["summary"]`` counts done / skipped / failed).

    on_share(n) hears how many pairs this process has before any runs; on_pair(record) after each
    pair is finished (raising KeyboardInterrupt there stops the run with the report written).
    log: progress messages; notify: what must be said even when quiet (a fetch of the weights); notes:
    the caller's lines about the run, logged once its memory is checked."""
    if job.plot:
        plot.require_matplotlib()
    if bool(job.manifest) == bool(job.contents or job.styles):
        raise ValueError("give either a MANIFEST or --contents DIR --styles DIR")
    if not job.manifest and not (job.contents and job.styles):
        raise ValueError("--contents and --styles go together")
    out_dir = storage.location(job.out_dir)
    if isinstance(out_dir, storage.Url):
        storage.check_writable_folder(out_dir, "--out-dir")  # now, not after the first batch
    pairs = (manifest.read_manifest(job.manifest, out_dir) if job.manifest
             else manifest.cross_product(job.contents, job.styles, out_dir))
    config = job.config
    index, count = 0, 1
    if job.distributed:
        index, count = distributed.initialize(job.coordinator, job.num_processes, job.process_id)
    share = manifest.process_share(pairs, index, count)
    if job.preview is not None and count > 1:
        raise ValueError("--preview watches one process: it is not for --distributed runs")
    page = None
    if job.preview is not None:  # before anything is loaded or made: a page that cannot start leaves nothing behind
        page = live.start(f"batch: {len(share)} pairs into {out_dir}", len(share), config, job.preview_host,
                          job.preview, notify)
    status = "failed"
    try:
        report, stopped = _run_share(job, share, len(pairs), (index, count), out_dir, page, on_pair=on_pair,
                                     on_share=on_share, log=log, notify=notify, notes=notes)
        status = "stopped" if stopped else "ended"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if page is not None:
            page.close(status)
    if count > 1 and index == 0:
        paths = [out_dir / f"report.process-{i}-of-{count}.json" for i in range(count)]
        report = merge_reports(paths, out_dir / "report.json", {"process_count": count})
    summary = report["summary"]
    log(f"{summary['done']} done, {summary['skipped']} skipped, {summary['failed']} failed "
        f"of {summary['total']}; report: {out_dir / 'report.json'}")
    return report


def _run_share(job: BatchJob, share: list, total: int, place: tuple[int, int], out_dir, page, *, on_pair, on_share,
               log, notify, notes) -> tuple[dict, bool]:
    """This process's ``share`` of the ``total`` pairs (``place``: its index and the process count),
    run to its report: (the report, whether the preview ``page`` stopped it)."""
    config = job.config
    index, count = place
    storage.make_folder(out_dir)
    report_path = out_dir / ("report.json" if count == 1 else f"report.process-{index}-of-{count}.json")
    vgg = load_network(job.weights, pooling=job.pooling, preprocessing=job.preprocessing, log=notify)
    mesh = batch_mesh() if len(jax.local_devices()) > 1 else None
    batch_size, why = job.batch_size, "given"
    if batch_size == "auto":  # a square bucket is the largest
        batch_size, why = memory.auto_batch_size(job.size, job.size, config)
    per_device = -(-min(batch_size, max(len(share), 1)) // len(jax.local_devices()))
    evaluation = None
    whole_fits = memory.estimate_bytes(job.size, job.size, config) <= memory.available_bytes()[0] * PLAN_SHARE
    if isinstance(job.block_size, int) or (job.block_size == "auto" and not whole_fits):
        # a square bucket is the largest; one big pair at a time, block by block
        plan = plan_evaluation(job.size, job.size, config, block_size=job.block_size, what="batch")
        config, evaluation = plan.config, plan.evaluation
        if plan.blocked:
            batch_size, why, mesh = 1, "one pair at a time, block by block", None
            notes = (*notes, *plan.notes)
    if evaluation is None:
        memory.check_fits(job.size, job.size, config, "batch", batch=per_device)  # a square bucket is the largest
    for note in notes:
        log(note)
    log(f"process {index + 1}/{count}: {len(share)} of {total} pairs, batch size {batch_size} ({why}), "
        f"{len(jax.local_devices())} local device(s)")
    on_share(len(share))
    watch = None
    if count > 1:  # a dead process stops the others within seconds (JAX alone waits 100 s, then aborts)
        watch = distributed.PeerWatch(index, count, on_failure=distributed.interrupt_main_then_exit)
    done = [0]

    def pair_done(record: dict) -> None:
        if page is not None and record["status"] != "pending":
            done[0] += 1
            page.live.report(done[0], terms=None if record["final_loss"] is None else {"total": record["final_loss"]})
            if record["status"] == "done":
                output = storage.location(record["output"])
                page.live.finished_item(output.name, lambda: images.load_image(output))
        on_pair(record)

    def progressed(pairs, state) -> None:
        names = ", ".join(storage.location(p.output).name for p in pairs[:3]) + (" ..." if len(pairs) > 3 else "")
        page.live.report(done[0], image=state.image, label=f"{names}: step {state.step}/{state.total}",
                         memory=memory.in_use())
        page.controls(done[0], state.image, storage.location(pairs[0].output))

    try:
        report = run_pairs(share, config=config, vgg=vgg, size=job.size, batch_size=batch_size,
                           style_size=job.style_size or job.size, report_path=report_path, overwrite=job.overwrite,
                           mesh=mesh, evaluation=evaluation, on_pair=pair_done,
                           report_extra={"process": index, "process_count": count},
                           plot=job.plot, stale_claim_seconds=job.claim_timeout,
                           progress=None if page is None else progressed,
                           steer=None if page is None else lambda step: page.steer(step, log),
                           steered=None if page is None else page.steered)
        if watch is not None:
            watch.finish()
    except live.StopRequested:  # the page's Stop: what finished is in the report, the rest stays pending
        notify(f"stopped from the preview page: {done[0]} pair(s) finished; run the same command again for the rest")
        return json.loads(storage.read_text(report_path)), True
    except (KeyboardInterrupt, Exception) as exc:
        if watch is None:
            raise
        # Leave at once: a normal exit would sit in JAX's shutdown barrier until the heartbeat timeout.
        failure = watch.failure
        watch.leave("interrupted" if isinstance(exc, KeyboardInterrupt) and failure is None else "failed")
        if failure is not None:
            distributed.abandon(f"{failure}; stopped process {index + 1} of {count} too. Finished outputs are "
                                f"kept; run the same command again to resume", 1)
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else (str(exc).splitlines() or [""])[0]
        distributed.abandon(f"process {index + 1} of {count}: {reason}",
                            EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_FAILED)
    return report, False
