"""Run a list of pairs to files: buckets, batches, atomic outputs, a JSON report, resume.

* A pair whose output exists is skipped (``overwrite`` redoes it), so a re-run after an
  interruption resumes where the last one stopped; outputs are written atomically, so an
  interrupted run leaves no partial file.
* An unreadable image fails only its own pairs (path and reason in the report); the rest finish.
* Pairs are grouped by :func:`jaxstyle.engine.batch.bucket_shape` and run ``batch_size`` at a time;
  one program is compiled per bucket and reused. Each output is resized from its bucket
  shape back to its own aspect ratio (longer side ``size``).
* Two runs on one output folder at once share the pairs through claim files
  (:mod:`jaxstyle.jobs.claims`): no pair is computed twice unless its claim went stale, and each
  run's report lists every pair once (``skipped``, "written by another run", for the others').
* The report (``report.json``, or one per process in a multi-host run) is rewritten after
  every batch and on interruption: every pair with status done / skipped / failed / pending,
  the reason, final loss, steps and wall time (a batch's time divided among its pairs).
* Inputs, outputs and the report may be URLs (:mod:`jaxstyle.io.storage`): an output object is
  uploaded whole once written, so the guarantees above hold on a bucket too, except that runs
  on one bucket prefix at once do not share claims (a pair may be computed by both; each
  output is still whole).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from cachetools import LRUCache

from jaxstyle.config import StyleConfig, optimizer_name
from jaxstyle.engine.batch import bucket_shape, stylize_batch
from jaxstyle.io import files, storage
from jaxstyle.io.images import OUTPUT_FORMATS, image_size, load_image, resize_mask_to, resize_to, save_image
from jaxstyle.io.plot import plot_losses
from jaxstyle.io.storage import Location
from jaxstyle.jobs.claims import BUSY, Claims, NoClaims
from jaxstyle.jobs.manifest import Pair, check_inside
from jaxstyle.model.vgg import VGG19

STATUSES = ("done", "skipped", "failed", "pending")


CACHED_STYLES = 64  # style images (and their Gram targets) kept for the next pairs that use them


def _exact_shape(height: int, width: int, size: int) -> tuple[int, int]:
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def write_report(path: Location, records: list[dict], extra: dict) -> dict:
    counts = {s: sum(r["status"] == s for r in records) for s in STATUSES}
    report = {"summary": {"total": len(records), **counts}, **extra, "pairs": records}
    storage.write_bytes(path, json.dumps(report, indent=2).encode())
    return report


def merge_reports(paths: list[Location], destination: Location, extra: dict) -> dict:
    """One report from the per-process reports of a multi-host run."""
    records = []
    for path in paths:
        records += json.loads(storage.read_text(path))["pairs"]
    records.sort(key=lambda r: r["output"])
    return write_report(destination, records, {**extra, "merged_from": [p.name for p in paths]})


def run_pairs(pairs: list[Pair], *, config: StyleConfig, vgg: VGG19, size: int, batch_size: int,
              style_size: int | None = None,
              report_path: Location, overwrite: bool = False, mesh: jax.sharding.Mesh | None = None,
              bucket_multiple: int = 32, on_pair: Callable[[dict], None] = lambda record: None,
              report_extra: dict | None = None, plot: bool = False, stale_claim_seconds: float = 60.0,
              poll_seconds: float = 1.0, progress: Callable | None = None,
              steer: Callable[[int], dict | None] | None = None, steered: dict | None = None,
              evaluation=None) -> dict:
    """Stylize ``pairs`` into their outputs; returns the report (also written to ``report_path``).
    With ``plot`` each output gets its loss curves beside it as ``<output stem>.loss.png``.

    Each pair is claimed (:mod:`jaxstyle.jobs.claims`) before it is computed, so a second run on the
    same outputs at the same time takes other pairs; a pair whose claim another live run holds is
    retried every ``poll_seconds`` until that run writes it (reported ``skipped``) or its claim
    goes stale (``stale_claim_seconds`` without a refresh, or its process gone): then it is
    computed here. progress(pairs, batch_progress): after every chunk of a batch's steps; steer:
    as :func:`jaxstyle.engine.batch.stylize_batch`'s (the live page); steered: the weights changed so
    far (a dict the caller keeps up to date), which every later batch starts with, in place of the
    config's and the pairs' own. evaluation: a strategy of :mod:`jaxstyle.engine.evaluation` (default:
    the whole image), e.g. block by block for big pairs."""
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    extra = {"config": {"size": size, "batch_size": batch_size, "iterations": config.iterations,
                        "optimizer": optimizer_name(config.optimizer), "weights": vgg.source}, **(report_extra or {})}
    records = [{**pair.to_dict(), "status": "pending", "reason": None, "final_loss": None, "steps": None,
                "seconds": None} for pair in pairs]
    by_output = {r["output"]: r for r in records}

    def finish(pair: Pair, status: str, **fields) -> None:
        record = by_output[str(pair.output)]
        record.update(status=status, **fields)
        on_pair(record)

    buckets: dict[tuple[tuple[int, int], int], list[Pair]] = {}
    for pair in pairs:
        if pair.error is not None:  # refused when the manifest was read (e.g. an output outside --out-dir)
            finish(pair, "failed", reason=pair.error)
            continue
        if not overwrite and storage.exists(pair.output):
            finish(pair, "skipped", reason="output exists")
            continue
        try:
            if pair.output.suffix.lower() not in OUTPUT_FORMATS:
                raise ValueError(f"{pair.output}: unsupported output extension {pair.output.suffix!r}, "
                                 f"expected one of {', '.join(OUTPUT_FORMATS)}")
            h, w = image_size(pair.content)
        except ValueError as exc:
            finish(pair, "failed", reason=str(exc))
            continue
        regions = len(pair.styles) if pair.content_mask is not None else 0  # masked pairs batch together
        buckets.setdefault((bucket_shape(h, w, size, bucket_multiple), regions), []).append(pair)

    # bounded, least recently used first out: a long run keeps memory flat
    styles: dict[Location, np.ndarray | str] = LRUCache(CACHED_STYLES)
    grams: dict = LRUCache(CACHED_STYLES)
    started = time.time()

    def written_by_another_run(pair: Pair) -> bool:
        modified = storage.modified(pair.output)  # with --overwrite only a file written since this run started counts
        return modified is not None and (not overwrite or modified >= started)

    waiting = buckets
    # Claim files need an atomic create-if-absent, which fsspec does not offer for object stores.
    claims_here = Claims(stale_seconds=stale_claim_seconds) if isinstance(report_path, Path) else NoClaims()
    try:
        with claims_here as claims:
            while waiting:  # pairs another run was computing are waited for, then taken over if it died
                busy: dict = {}
                for key, bucket in sorted(waiting.items()):
                    queue = list(bucket)
                    while queue:
                        batch = []
                        while queue and len(batch) < batch_size:
                            pair = queue.pop(0)
                            if claims.try_claim(pair.output) == BUSY:
                                busy.setdefault(key, []).append(pair)
                            elif written_by_another_run(pair):  # checked under our claim: no race
                                claims.release(pair.output)
                                finish(pair, "skipped", reason="written by another run")
                            else:
                                if isinstance(pair.output, Path):  # ours now: what a killed writer left goes
                                    files.remove_temporaries(pair.output)
                                batch.append(pair)
                        if not batch:
                            continue
                        try:
                            _run_batch(batch, key[0], config=config, vgg=vgg, size=size, out_dir=report_path.parent,
                                       style_size=style_size or size, mesh=mesh, evaluation=evaluation,
                                       styles=styles, grams=grams, finish=finish, plot=plot, progress=progress,
                                       steer=steer, steered=steered or {})
                        finally:
                            for pair in batch:
                                claims.release(pair.output)
                        write_report(report_path, records, extra)
                if busy:
                    time.sleep(poll_seconds)
                waiting = busy
    finally:  # also on KeyboardInterrupt: what finished is recorded, the rest stays pending
        report = write_report(report_path, records, extra)
    return report


def _run_batch(batch: list[Pair], shape: tuple[int, int], *, config, vgg, size, out_dir, style_size, mesh, styles,
               grams, finish, plot=False, progress=None, steer=None, steered=None, evaluation=None) -> None:
    contents, style_images, ready, exact_shapes = [], [], [], []
    content_masks, style_masks = [], []
    for pair in batch:
        try:
            original = load_image(pair.content)
            content = resize_to(original, *shape)
            for path in pair.styles:
                if path not in styles:
                    try:
                        styles[path] = load_image(path, max_size=style_size)
                    except ValueError as exc:
                        styles[path] = str(exc)
                if isinstance(styles[path], str):
                    raise ValueError(styles[path])
            content_mask = None
            if pair.content_mask is not None:
                content_mask = resize_mask_to(load_image(pair.content_mask), *shape)  # stylize_batch takes luminance
            masks = [None if m is None else resize_mask_to(load_image(m), *styles[p].shape[:2])
                     for m, p in zip(pair.style_masks, pair.styles)] or None
        except ValueError as exc:
            finish(pair, "failed", reason=str(exc))
            continue
        contents.append(content)
        exact_shapes.append(_exact_shape(*original.shape[:2], size))
        style_images.append([styles[path] for path in pair.styles])
        content_masks.append(content_mask)
        style_masks.append(masks)
        ready.append(pair)
    if not ready:
        return
    start = time.perf_counter()
    steered = steered or {}
    if "tv_weight" in steered:
        config = dataclasses.replace(config, tv_weight=steered["tv_weight"])
    try:
        results = stylize_batch(
            np.stack(contents), style_images, config=config, vgg=vgg, mesh=mesh, evaluation=evaluation,
            content_weights=[steered.get("content_weight", config.content_weight if p.content_weight is None
                                         else p.content_weight) for p in ready],
            style_weights=[steered.get("style_weight", config.style_weight if p.style_weight is None
                                       else p.style_weight) for p in ready],
            seeds=[config.seed if p.seed is None else p.seed for p in ready],
            gram_cache=grams,
            style_blends=[p.style_blend for p in ready],
            content_masks=content_masks if ready[0].content_mask is not None else None,
            style_masks=style_masks, track_terms=plot, steer=steer,
            callback=None if progress is None else lambda state: progress(ready, state),
            callback_every=max(1, min(50, config.iterations)))
    except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the run; the reason is reported
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for pair in ready:
            finish(pair, "failed", reason=reason if isinstance(exc, ValueError) else f"{type(exc).__name__}: {reason}")
        return
    seconds = (time.perf_counter() - start) / len(ready)
    for pair, result, exact in zip(ready, results, exact_shapes):
        try:
            check_inside(out_dir, pair.output)  # again: a symlink may have appeared meanwhile
            storage.make_folder(pair.output.parent)
            save_image(pair.output, resize_to(result.image, *exact))
            if plot:
                plot_losses(pair.output.with_name(f"{pair.output.stem}.loss.png"), result.loss_history,
                            result.term_history, title=f"{pair.content.name} in the style of "
                                                       f"{', '.join(p.name for p in pair.styles)}")
        except storage.StorageError as exc:  # names the output already
            finish(pair, "failed", reason=f"cannot write: {exc}")
            continue
        except (ValueError, OSError) as exc:
            finish(pair, "failed", reason=f"{pair.output}: cannot write ({exc})")
            continue
        fields = dict(final_loss=result.losses["total"], steps=result.steps, seconds=seconds)
        if result.status == "done":
            finish(pair, "done", **fields)
        else:
            finish(pair, "failed", reason=f"non-finite loss after {result.steps} steps; "
                                          f"the last finite image was saved", **fields)
