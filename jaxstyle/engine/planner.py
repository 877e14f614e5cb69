"""How a run is evaluated, decided before anything is compiled: on the whole image when its
memory estimate fits, else block by block (:class:`~jaxstyle.engine.evaluation.BlockByBlock`) at
the largest block size that fits, with the L-BFGS history shrunk when even that does not; and the
coarse-to-fine schedule big outputs get by default.

Memory is the estimate of :mod:`jaxstyle.engine.memory` against ``PLAN_SHARE`` of the free memory
of the first local device (the estimate errs by up to ~25%; the rest is headroom). A plan says what
it chose and why (``notes``), and :func:`plan_evaluation` raises
:class:`~jaxstyle.engine.memory.WontFitError` with what to change when nothing fits (every change that
would make it fit: a smaller size, Adam, a shorter L-BFGS history). Only a named L-BFGS has its
history shrunk; an optimizer object is planned with the state it has.
"""

from __future__ import annotations

import dataclasses

import jax

from jaxstyle.config import StyleConfig, optimizer_name
from jaxstyle.engine import memory
from jaxstyle.engine.evaluation import BlockByBlock, WholeImage
from jaxstyle.engine.run import stages
from jaxstyle.engine.sharding import batch_mesh
from jaxstyle.objective.blocks import MIN_BLOCK_UNITS, Blocking, receptive_halo
from jaxstyle.objective.style_losses import require_whole

# Of the free memory, for what a plan chooses itself: the estimate is of the compiled loop (within
# ~15% of XLA's analysis), and a process holds ~2 GB more (the runtime, a stage's targets, compiling):
# a 4096x3072 run planned at 0.8 of 23 GiB peaked above 24 GB resident and was killed.
PLAN_SHARE = 0.7
BLOCK_SIZES = (4096, 3072, 2048, 1536, 1024, 768, 512, 384, 256)  # tried largest first
MIN_HISTORY = 5  # L-BFGS pairs below which a plan suggests Adam instead of shrinking further
COARSE_TO_FINE_FROM = 2048  # outputs of at least this longest side run coarse-to-fine by default
COARSEST = 1024  # ... halving down to about this


def coarse_to_fine_scales(size: int) -> tuple[int, ...]:
    """The coarse stages (longest sides) a ``size`` px output runs first by default: halving down to
    about ``COARSEST`` px (as Galerne et al. do for their 4K-8K outputs); none below
    ``COARSE_TO_FINE_FROM``. 4096 -> (1024, 2048); 3000 -> (1500,); 1536 -> ()."""
    if size < COARSE_TO_FINE_FROM:
        return ()
    scales = []
    side = size
    while side / 2 >= COARSEST * 0.75:
        side = round(side / 2)
        scales.append(side)
    return tuple(reversed(scales))


@dataclasses.dataclass(frozen=True)
class EvaluationPlan:
    """config: the run's configuration (``lbfgs_memory`` possibly shrunk); evaluation: the strategy;
    need: the estimate of the largest stage (bytes); have, where: the free memory it was planned
    against; notes: what was chosen and why, a line each."""

    config: StyleConfig
    evaluation: WholeImage
    need: int
    have: int
    where: str
    notes: tuple[str, ...]

    @property
    def blocked(self) -> bool:
        return isinstance(self.evaluation, BlockByBlock)


def _whole_up_to(height: int, width: int, config: StyleConfig, budget: float) -> int:
    """Pixels of the largest stage of the run whose whole image fits in ``budget``."""
    fitting = [s.shape[0] * s.shape[1] for s in stages(height, width, config)
               if memory.estimate_bytes(*s.shape, config) <= budget]
    return max(fitting, default=0)


def _blocked_need(height: int, width: int, config: StyleConfig, blocking: Blocking) -> int:
    """The largest stage's estimate under ``blocking``: each stage whole or block by block as it
    will run (a coarse stage of one block, or within ``whole_up_to``, runs whole)."""
    return max(memory.estimate_block_bytes(*s.shape, config, blocking) for s in stages(height, width, config))


def _history_that_fits(height: int, width: int, config: StyleConfig, blocking: Blocking, budget: float) -> int:
    """The largest L-BFGS history (<= the config's) with which the blocked run fits ``budget``; 0 if none."""
    for pairs in range(config.lbfgs_memory, 0, -1):
        if _blocked_need(height, width, dataclasses.replace(config, lbfgs_memory=pairs), blocking) <= budget:
            return pairs
    return 0


def _uses_history(config: StyleConfig) -> bool:
    return config.optimizer in ("lbfgs", "jaxopt-lbfgs")


def plan_evaluation(height: int, width: int, config: StyleConfig, *, block_size: int | str | None = "auto",
                    what: str = "run", devices: list[jax.Device] | None = None) -> EvaluationPlan:
    """The evaluation of a run at ``height`` x ``width`` (its full size; ``config.scales`` before).

    block_size: "auto" (whole when it fits, else blocks), an int (blocks of that many px, forced:
    every stage of more than one block), or None (whole only). With several local devices each
    chunk of blocks is split over them. Raises :class:`~jaxstyle.engine.memory.WontFitError`."""
    devices = list(jax.local_devices() if devices is None else devices)
    have, where = memory.available_bytes(devices[0])
    whole = memory.estimate_bytes(height, width, config)
    runs = f"a {width}x{height} run"
    if block_size is None or (block_size == "auto" and whole <= have * PLAN_SHARE):
        if whole > have:
            hints = [*memory.optimizer_fixes(config, lambda c: memory.estimate_bytes(height, width, c) <= have),
                     "a smaller --size", "block-by-block evaluation (--block-size auto)"]
            raise memory.WontFitError(f"{what}: {runs} needs about {memory.format_bytes(whole)} on the whole image "
                                      f"but only {memory.format_bytes(have)} of {where} is free; try "
                                      + ", ".join(hints))
        return EvaluationPlan(config, WholeImage(), whole, have, where,
                              (f"evaluation: whole image ({memory.format_bytes(whole)})",))
    if config.style_loss != "gram":  # never blocks silently for a loss that refuses them
        why = "forced by --block-size" if block_size != "auto" else (
            f"{runs} needs about {memory.format_bytes(whole)} on the whole image, {memory.format_bytes(have)} free")
        require_whole(config.style_loss, f"block-by-block evaluation ({why})")
    if block_size != "auto" and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"expected block_size 'auto', None or a positive integer (px), got {block_size!r}")
    _, unit = receptive_halo(config.all_layers, memory.winograd_for(config))
    if block_size != "auto" and block_size < MIN_BLOCK_UNITS * unit:
        raise ValueError(f"--block-size: expected at least {MIN_BLOCK_UNITS * unit} px for these layers, "
                         f"got {block_size}")
    mesh = batch_mesh(devices, "blocks") if len(devices) > 1 else None
    budget = have * PLAN_SHARE if block_size == "auto" else have
    whole_up_to = _whole_up_to(height, width, config, budget) if block_size == "auto" else 0
    sizes = BLOCK_SIZES if block_size == "auto" else (block_size,)
    sizes = [s for s in sizes if s < max(height, width)] or [min(sizes)]
    candidates = [Blocking(s, per_chunk=len(devices), whole_up_to=whole_up_to, mesh=mesh) for s in sizes]
    notes = []
    chosen = next((b for b in candidates if _blocked_need(height, width, config, b) <= budget), None)
    if chosen is None and _uses_history(config):
        wanted = min(config.lbfgs_memory, 10)  # the largest block whose run keeps a useful history
        for blocking in candidates:
            pairs = _history_that_fits(height, width, config, blocking, budget)
            if pairs >= wanted or (blocking is candidates[-1] and pairs >= MIN_HISTORY):
                chosen = blocking
                pair = memory.format_bytes(memory.BLOCK_LBFGS_ARRAYS_PER_PAIR * height * width * 12)
                notes.append(f"L-BFGS history: {pairs} pairs instead of {config.lbfgs_memory} so that the run fits "
                             f"(each pair needs {pair}; --optimizer adam keeps none)")
                config = dataclasses.replace(config, lbfgs_memory=pairs)
                break
    if chosen is None:
        smallest = candidates[-1]
        need = _blocked_need(height, width, config, smallest)
        hints = [*memory.optimizer_fixes(config, lambda c: _blocked_need(height, width, c, smallest) <= budget),
                 "a smaller --size"]
        if block_size != "auto":
            hints.append("a smaller --block-size")
        raise memory.WontFitError(f"{what}: {runs} needs about {memory.format_bytes(need)} even block by block "
                                  f"({smallest.block_size} px blocks, {optimizer_name(config.optimizer)}) but only "
                                  f"{memory.format_bytes(have)} of {where} is free; try " + ", ".join(hints))
    need = _blocked_need(height, width, config, chosen)
    layout = chosen.layout(height, width, config.all_layers, memory.winograd_for(config))
    why = "forced by --block-size" if block_size != "auto" else (
        f"the whole image needs about {memory.format_bytes(whole)} of {memory.format_bytes(have)} free")
    blocks = (f"{len(layout.rows.starts)}x{len(layout.cols.starts)} blocks of about {chosen.block_size} px, windows "
              f"{layout.window[1]}x{layout.window[0]}" if layout is not None else "one block: whole")
    notes.insert(0, f"evaluation: block by block, {blocks} ({memory.format_bytes(need)}; {why})")
    if whole_up_to:
        notes.append(f"stages of up to {whole_up_to / 1e6:.2f} MP evaluated whole")
    return EvaluationPlan(config, BlockByBlock(chosen), need, have, where, tuple(notes))
