"""The plan of a run, from the content image's header alone: the stages, their steps, how the
objective is evaluated (whole or block by block, :mod:`jaxstyle.engine.planner`) and the memory the
largest stage needs against what this device has (``jaxstyle plan``); with ``compile``, also XLA's
own analysis of the compiled loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jaxstyle.config import StyleConfig, optimizer_name
from jaxstyle.engine import memory
from jaxstyle.engine.planner import plan_evaluation
from jaxstyle.engine.run import stages
from jaxstyle.io import images
from jaxstyle.model.vgg import VGG19


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """lines: what to print; fits: whether the run fits in the free memory."""

    lines: tuple[str, ...]
    fits: bool


def plan_run(content: str, config: StyleConfig, size: int, *, block_size: int | str | None = "auto",
             compile_with: Callable[[], VGG19] | None = None) -> RunPlan:
    """The plan of a run of ``content`` at longest side ``size``; ``compile_with`` (a function
    giving the network) also compiles the loop for XLA's memory analysis."""
    height, width = images.fitted_shape(*images.image_size(content), size)
    lines = [f"output: {width}x{height} px; stages: "
             + ", ".join(f"{s.shape[1]}x{s.shape[0]} ({s.iterations} steps)" for s in stages(height, width, config))]
    try:
        plan = plan_evaluation(height, width, config, block_size=block_size, what=content)
    except memory.WontFitError as exc:
        return RunPlan((*lines, f"does NOT fit: {exc}"), False)
    config = plan.config
    lines += plan.notes
    lines.append(f"memory estimate: {memory.format_bytes(plan.need)} (largest stage, {optimizer_name(config.optimizer)}"
                 + (f" with {config.lbfgs_memory} pairs" if config.optimizer in ("lbfgs", "jaxopt-lbfgs") else "")
                 + f", {config.precision}{', remat' if config.remat else ''})")
    if compile_with is not None:
        compiled = memory.compiled_bytes(compile_with(), height, width, config, plan.evaluation)
        lines.append("XLA's analysis of the compiled loop: " + (memory.format_bytes(compiled) if compiled else "n/a"))
    lines.append(f"{plan.where}: {memory.format_bytes(plan.have)} -> fits")
    return RunPlan(tuple(lines), True)
