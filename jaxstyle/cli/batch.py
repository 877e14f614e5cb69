"""`jaxstyle batch`: many pairs, from a manifest or every content x every style (:mod:`jaxstyle.jobs.batch`).

Exit 0 when every pair is done or skipped, 1 when one failed, 130 when pairs are left pending (the
page's Stop: the same command does the rest)."""

from __future__ import annotations

from jaxstyle.cli import common
from jaxstyle.cli.interrupts import stop_if_interrupted
from jaxstyle.jobs.batch import BatchJob, run_batch_job


def run(args) -> int:
    common.keep_compiled_programs()
    job = BatchJob(out_dir=args.out_dir, manifest=args.manifest, contents=args.contents, styles=args.styles,
                   config=common.style_config(args), size=args.size, style_size=common.style_size(args),
                   batch_size=args.batch_size, overwrite=args.overwrite, plot=args.plot,
                   claim_timeout=args.claim_timeout, distributed=args.distributed, coordinator=args.coordinator,
                   num_processes=args.num_processes, process_id=args.process_id, weights=common.network_path(args),
                   preprocessing=args.preprocessing, pooling=args.pooling, preview=args.preview,
                   preview_host=args.preview_host, block_size=args.block_size)
    bar = None

    def on_share(pairs: int) -> None:
        nonlocal bar
        bar = common.progress_bar(args, pairs, "pair")

    def on_pair(record: dict) -> None:
        if bar is not None:
            bar.update(1)
        elif record["status"] != "skipped" or record["reason"] != "output exists":  # resumed pairs go unsaid
            common.log(args, f"{record['status']}: {record['output']}"
                             + (f" ({record['reason']})" if record["reason"] else ""))
        stop_if_interrupted()  # after reporting the pair: it is finished

    try:
        report = run_batch_job(job, on_pair=on_pair, on_share=on_share, log=lambda m: common.log(args, m),
                               notify=common.notify, notes=common.notes(args))
    finally:
        if bar is not None:
            bar.close()
    summary = report["summary"]
    if summary.get("pending"):  # stopped from the preview page: the job said what is left to do
        return common.EXIT_INTERRUPTED
    return 0 if summary["failed"] == 0 else 1
