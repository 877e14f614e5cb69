"""The plan of a run, from the content image's header alone: the stages, their steps, and the
memory the largest needs against what this device has (``jaxstyle plan``); with ``compile``,
also XLA's own analysis of the compiled loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jaxstyle.config import StyleConfig, optimizer_name
from jaxstyle.engine import memory
from jaxstyle.engine.run import stages
from jaxstyle.io import images
from jaxstyle.model.vgg import VGG19


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """lines: what to print; fits: whether the estimate fits in the free memory."""

    lines: tuple[str, ...]
    fits: bool


def plan_run(content: str, config: StyleConfig, size: int, *, compile_with: Callable[[], VGG19] | None = None
             ) -> RunPlan:
    """The plan of a run of ``content`` at longest side ``size``; ``compile_with`` (a function
    giving the network) also compiles the loop for XLA's memory analysis."""
    height, width = images.fitted_shape(*images.image_size(content), size)
    plan = stages(height, width, config)
    lines = [f"output: {width}x{height} px; stages: "
             + ", ".join(f"{s.shape[1]}x{s.shape[0]} ({s.iterations} steps)" for s in plan)]
    need = memory.estimate_bytes(height, width, config)
    have, where = memory.available_bytes()
    lines.append(f"memory estimate: {memory.format_bytes(need)} (largest stage, {optimizer_name(config.optimizer)}, "
                 f"{config.precision}{', remat' if config.remat else ''})")
    if compile_with is not None:
        compiled = memory.compiled_bytes(compile_with(), height, width, config)
        lines.append("XLA's analysis of the compiled loop: " + (memory.format_bytes(compiled) if compiled else "n/a"))
    fits = need <= have
    lines.append(f"{where}: {memory.format_bytes(have)} -> " + ("fits" if fits else "does NOT fit; try a smaller "
                                                               "--size" + ("" if config.remat else " or --remat")))
    return RunPlan(tuple(lines), fits)
