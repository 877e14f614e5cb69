"""How much memory a run needs, known before anything is compiled or allocated.

``estimate_bytes`` is a formula over the network's layer shapes: every layer output up to the
deepest layer used (the activations the backward pass keeps), the weights, and the image-sized
arrays of the optimizer, plus a fixed overhead. The optimizer's arrays are read from its own state
(``jax.eval_shape`` of its ``init``: :func:`optimizer_arrays`), for the named optimizers and
``module:factory`` ones alike: Adam keeps 2, L-BFGS ``2 * lbfgs_memory`` in its history of
curvature pairs and needs as many again while it computes a direction. Its constants are
calibrated against XLA's own memory analysis of the compiled loop (``compiled_bytes``) at
256-1024 px (estimate 0.88-1.16x the analysis over the default, remat, Adam, bfloat16 and
direct-convolution configurations, 2026-11-30; a factory's Adam 1.11x and optax's L-BFGS 1.16x at
512x384), and a test keeps the two within 25% of each other.

The formula counts activations in float32 and ignores ``remat``: on XLA:CPU neither bfloat16
nor per-block rematerialisation lowered the compiled loop's memory (measured at 1024x768:
2.2 GiB float32, 1.9 GiB bfloat16, 2.9 GiB with remat; a single gradient: 1338 MiB of
temporaries without remat, 1384 MiB with). Where they do help (accelerators, whose
schedulers are memory-aware), the estimate errs on the safe side.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxstyle.config import StyleConfig
from jaxstyle.engine.evaluation import WholeImage
from jaxstyle.engine.program import Program
from jaxstyle.engine.run import init_state, run_chunk
from jaxstyle.model.convolutions import winograd_layers
from jaxstyle.model.vgg import CONV_KERNEL_SHAPES, LAYER_INDEX, LAYER_NAMES, poolings_before
from jaxstyle.objective.blocks import Blocking, pad_targets
from jaxstyle.objective.targets import compute_targets
from jaxstyle.objective.terms import loss_weights
from jaxstyle.optim import make_optimizer

ACTIVATION_FACTOR = 0.9  # buffers per kept activation element (an output and its gradient, overlapped)
IMAGE_ARRAYS = 8  # image-sized arrays besides the optimizer's state (x, gradient, last finite, trial, ...)
# L-BFGS's image-sized arrays per remembered pair: the pair itself (2) and as many again for the
# two-loop recursion's temporaries (XLA's analysis: 4 * memory + ~5 more image arrays than Adam,
# at 256, 512 and 1024 px). Counted for every stack of image-sized arrays in an optimizer's state.
LBFGS_ARRAYS_PER_PAIR = 4
OVERHEAD_BYTES = 32 << 20
SLICED_ARRAYS = 2  # per style-layer output element: "sliced"'s sorted target and sort workspace
W2_MATRICES = 16  # per style layer, [C, C] float32: "w2"'s Newton-Schulz iterates and targets
BLOCK_IMAGE_ARRAYS = 3  # block by block: the padded image, the gradient the windows add into, its crop
# Block by block, XLA's analysis of the compiled loop at 4096x3072 grew by 0.85 GiB per L-BFGS pair
# (5 vs 13 pairs, 1024 px blocks): 6 image-sized arrays, not the whole image's 4 (2026-12-02).
BLOCK_LBFGS_ARRAYS_PER_PAIR = 6


class WontFitError(ValueError):
    """The run would not fit; the message says what to change."""


def _layer_elements(height: int, width: int, deepest: int) -> list[tuple[str, int]]:
    """(name, elements) of every layer output up to ``deepest`` (a LAYER_INDEX)."""
    h, w, channels, out = height, width, 3, []
    for name in LAYER_NAMES[: deepest + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        elif name.startswith("conv"):
            channels = CONV_KERNEL_SHAPES[name][3]
        out.append((name, h * w * channels))
    return out


def activation_elements(height: int, width: int, config: StyleConfig) -> int:
    """Elements of every layer output up to the deepest layer used."""
    deepest = max(LAYER_INDEX[n] for n in config.all_layers)
    return sum(n for _, n in _layer_elements(height, width, deepest))


def estimate_bytes(height: int, width: int, config: StyleConfig, batch: int = 1) -> int:
    """Memory of a run at ``height`` x ``width`` (the full-size stage: coarse stages need less),
    optimising ``batch`` images together (weights shared)."""
    activations = _activation_bytes(height, width, config) + statistic_bytes(height, width, config)
    images = height * width * 3 * 4 * (optimizer_arrays(height, width, config) + IMAGE_ARRAYS)
    return int(OVERHEAD_BYTES + _weight_bytes(config) + batch * (activations + images))


def statistic_bytes(height: int, width: int, config: StyleConfig) -> float:
    """What a style loss keeps besides the activations: for "sliced" each style layer's sorted
    target [N, C] and its sort's workspace (values, permutation, gradient), ``SLICED_ARRAYS`` x the
    layer's output; for "w2" the Newton-Schulz matrices, ``W2_MATRICES`` [C, C] per style layer;
    Gram's [C, C] are within the activations' share. (XLA's analysis at 192x256 and 384x512,
    2026-12-06: sliced +11% / +14% over Gram's loop, W2 +5% / +3%.)"""
    if config.style_loss == "sliced":
        return sum(SLICED_ARRAYS * 4 * (height >> poolings_before(n)) * (width >> poolings_before(n)) * _channels(n)
                   for n in config.style_layers)
    if config.style_loss == "w2":
        return sum(W2_MATRICES * 4 * _channels(n) ** 2 for n in config.style_layers)
    return 0.0


def optimizer_arrays(height: int, width: int, config: StyleConfig, *, per_pair: int = LBFGS_ARRAYS_PER_PAIR
                     ) -> float:
    """The memory of the config's optimizer at ``height`` x ``width``, in float32 [H, W, 3] images:
    the leaves of its state (``jax.eval_shape`` of its ``init``, nothing allocated), an image-sized
    leaf once, a stack of them ([m, H, W, 3]: a history of curvature pairs) ``per_pair / 2`` times
    per image (its temporaries, as calibrated on our L-BFGS; optax's ``lbfgs`` needs fewer, ~1.25:
    for it the estimate errs on the safe side), any other leaf by its bytes.

    Adam: 2 (its moments); our L-BFGS: ``per_pair * lbfgs_memory + 4`` (the pairs; the gradient,
    direction and the last iterate and gradient)."""
    image = height * width * 3
    total = 0.0
    for shape, itemsize in _state_leaves(config.optimizer, config.learning_rate, config.lbfgs_memory, height, width):
        stacked = len(shape) > 3 and tuple(shape[-3:]) == (height, width, 3)
        total += math.prod(shape) * itemsize / 4 / image * (per_pair / 2 if stacked else 1)
    return total


def _state_leaves(optimizer, learning_rate, lbfgs_memory: int, height: int, width: int
                  ) -> tuple[tuple[tuple[int, ...], int], ...]:
    """(shape, bytes per element) of each leaf of the optimizer's state for a float32 [H, W, 3] image."""
    try:
        return _cached_state_leaves(optimizer, learning_rate, lbfgs_memory, height, width)
    except TypeError:  # an optimizer object that cannot be hashed
        return _cached_state_leaves.__wrapped__(optimizer, learning_rate, lbfgs_memory, height, width)


@functools.lru_cache(maxsize=512)
def _cached_state_leaves(optimizer, learning_rate, lbfgs_memory, height, width):
    made = make_optimizer(optimizer, learning_rate=learning_rate, memory=lbfgs_memory)
    image = jax.ShapeDtypeStruct((height, width, 3), jnp.float32)
    state = jax.eval_shape(lambda x: made.init(x, lambda y: jnp.vdot(y, y)), image)
    return tuple((tuple(leaf.shape), jnp.dtype(leaf.dtype).itemsize) for leaf in jax.tree.leaves(state))


def winograd_for(config: StyleConfig) -> tuple[str, ...]:
    """The layers this backend computes by Winograd under the config."""
    return winograd_layers(config.conv, config.all_layers, jax.default_backend(), config.precision)


def _weight_bytes(config: StyleConfig) -> int:
    deepest = max(LAYER_INDEX[n] for n in config.all_layers)
    convs = [n for n in LAYER_NAMES[: deepest + 1] if n.startswith("conv")]
    weights = sum(k[0] * k[1] * k[2] * k[3] + k[3] for k in (CONV_KERNEL_SHAPES[n] for n in convs)) * 4
    # Winograd layers keep their transformed kernels (36 points, forward and backward: 8x the kernel)
    return weights + sum(72 * CONV_KERNEL_SHAPES[n][2] * CONV_KERNEL_SHAPES[n][3] * 4 for n in winograd_for(config))


def _activation_bytes(height: int, width: int, config: StyleConfig) -> float:
    """The activations the backward pass keeps, and the workspace of 36/16 of their input and
    output that Winograd layers need while they run."""
    fast = winograd_for(config)
    sizes = {n: (height >> poolings_before(n)) * (width >> poolings_before(n)) for n in fast}
    workspace = max((sizes[n] * 36 // 16 * (CONV_KERNEL_SHAPES[n][2] + CONV_KERNEL_SHAPES[n][3]) * 4 for n in fast),
                    default=0)
    return activation_elements(height, width, config) * 4 * ACTIVATION_FACTOR + workspace


def estimate_block_bytes(height: int, width: int, config: StyleConfig, blocking: Blocking) -> int:
    """Memory of a run at ``height`` x ``width`` evaluated block by block (per device): the weights,
    one chunk of windows' activations, the image-sized arrays (the optimizer's, and the padded image and
    gradient the blocks read and add into) and the padded content features; the full-size stage."""
    layout = blocking.layout(height, width, config.all_layers, winograd_for(config))
    if layout is None:
        return estimate_bytes(height, width, config)
    # a chunk's windows are split over the mesh's devices; CPU devices share the host's memory
    apart = blocking.mesh is not None and any(d.platform != "cpu" for d in blocking.mesh.devices.flat)
    windows = blocking.per_chunk // blocking.mesh.devices.size if apart else blocking.per_chunk
    activations = windows * _activation_bytes(*layout.window, config)
    history = optimizer_arrays(height, width, config, per_pair=BLOCK_LBFGS_ARRAYS_PER_PAIR)
    images = height * width * 3 * 4 * (history + IMAGE_ARRAYS + BLOCK_IMAGE_ARRAYS)
    content = sum((layout.rows.padded >> poolings_before(n)) * (layout.cols.padded >> poolings_before(n))
                  * _channels(n) * 4 for n in config.content_layers)
    return int(OVERHEAD_BYTES + _weight_bytes(config) + activations + images + content)


def _channels(layer: str) -> int:
    """Channels of a layer's output."""
    conv = max((n for n in LAYER_NAMES[: LAYER_INDEX[layer] + 1] if n.startswith("conv")), key=LAYER_INDEX.__getitem__)
    return CONV_KERNEL_SHAPES[conv][3]


def available_bytes(device: jax.Device | None = None) -> tuple[int, str]:
    """(bytes, description) of the memory a run may use on ``device`` (default: this process's first)."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except (AttributeError, jax.errors.JaxRuntimeError):  # a backend without stats, a remote device
        stats = None
    if stats and stats.get("bytes_limit"):
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return free, f"{device.device_kind} memory"
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024, "available host memory"
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "available host memory"


def optimizer_fixes(config: StyleConfig, fits: Callable[[StyleConfig], bool]) -> list[str]:
    """The optimizer options with which a run that does not fit would (``fits`` of a config), as hints:
    ``--lbfgs-memory N`` (the largest N that fits) for a named L-BFGS, ``--optimizer adam`` for any
    optimizer but Adam."""
    hints = []
    if config.optimizer in ("lbfgs", "jaxopt-lbfgs"):
        pairs = next((n for n in range(config.lbfgs_memory - 1, 0, -1)
                      if fits(dataclasses.replace(config, lbfgs_memory=n))), None)
        if pairs is not None:
            hints.append(f"--lbfgs-memory {pairs}")
    if config.optimizer != "adam" and fits(dataclasses.replace(config, optimizer="adam", learning_rate=None)):
        hints.append("--optimizer adam (it keeps no history)")
    return hints


def check_fits(height: int, width: int, config: StyleConfig, what: str, device: jax.Device | None = None,
               batch: int = 1) -> int:
    """Raise :class:`WontFitError` when the run would not fit; returns the estimate."""
    need = estimate_bytes(height, width, config, batch)
    have, where = available_bytes(device)
    if need > have:
        hints = (optimizer_fixes(config, lambda c: estimate_bytes(height, width, c, batch) <= have)
                 + ["a smaller --size"] + (["a smaller --batch-size"] if batch > 1 else [])
                 + ([] if config.remat else ["--remat (on accelerators)"]))
        runs = f"a batch of {batch} {width}x{height} runs" if batch > 1 else f"a {width}x{height} run"
        raise WontFitError(f"{what}: {runs} needs about {format_bytes(need)} but only "
                           f"{format_bytes(have)} of {where} is free; try {', '.join(hints)}")
    return need


def check_fits_sharded(height: int, width: int, config: StyleConfig, what: str, grid: tuple[int, int],
                       devices: list[jax.Device] | None = None) -> int:
    """:func:`check_fits` for one image split into ``grid`` (rows, columns) tiles over ``devices``
    (``--shard-image``); returns the estimate per device.

    Each device holds the weights whole and its tile's share of the activations and image arrays,
    so one device needs about :func:`estimate_bytes` of a tile. Devices with memories of their own
    (GPUs, TPUs) are checked one by one against their own free memory; devices that share one
    host's memory (XLA:CPU devices) need it all together, so their sum is checked against it."""
    devices = list(jax.local_devices() if devices is None else devices)
    rows, columns = grid
    if rows * columns != len(devices):
        raise ValueError(f"expected a grid of {len(devices)} tiles (one per device), got {rows}x{columns}")
    tile = (-(-height // rows), -(-width // columns))
    per_device = estimate_bytes(*tile, config)
    split = f"a {width}x{height} run split into {rows}x{columns} tiles"
    if all(d.platform == "cpu" for d in devices):
        need = per_device * len(devices)
        have, where = available_bytes(devices[0])
        if need > have:
            hints = optimizer_fixes(config, lambda c: estimate_bytes(*tile, c) * len(devices) <= have)
            raise WontFitError(f"{what}: {split} over {len(devices)} CPU devices, which share this host's memory, "
                               f"needs about {format_bytes(need)} but only {format_bytes(have)} of {where} is free; "
                               f"try {', '.join([*hints, 'a smaller --size'])}")
        return per_device
    for device in devices:
        have, where = available_bytes(device)
        if per_device > have:
            hints = [*optimizer_fixes(config, lambda c, have=have: estimate_bytes(*tile, c) <= have), "more devices",
                     "a smaller --size", *([] if config.remat else ["--remat"])]
            raise WontFitError(f"{what}: {split} needs about {format_bytes(per_device)} per device but only "
                               f"{format_bytes(have)} of {where} is free on {device}; try {', '.join(hints)}")
    return per_device


# Most pairs a device optimises together under --batch-size auto on an accelerator. On an
# H100 at 512 px pairs/s stopped growing at 4 (1.18x a loop; 8 and 16: 1.16x); smaller images
# need bigger batches to fill the device (benchmarks/README.md, batch throughput).
MAX_AUTO_BATCH_PER_DEVICE = 8
AUTO_MEMORY_SHARE = 0.8  # of the free device memory, for a batch picked automatically


def auto_batch_size(height: int, width: int, config: StyleConfig,
                    devices: list[jax.Device] | None = None) -> tuple[int, str]:
    """(pairs per batch, why) for ``--batch-size auto``.

    On CPU devices one pair per device: the convolutions of one image already keep every
    core busy, so a batch only adds memory (measured on a 2-core CPU: batches of 2-8 pairs ran
    at 1.02-1.06x a loop's pairs/s at 128 px, 0.90-0.97x at 256 px). On an accelerator, per
    device the largest batch up to ``MAX_AUTO_BATCH_PER_DEVICE`` whose estimate fits in
    ``AUTO_MEMORY_SHARE`` of its free memory (at least 1), times the devices.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if devices[0].platform == "cpu":
        return len(devices), f"auto: 1 per CPU device, {len(devices)} device(s)"
    have, where = available_bytes(devices[0])
    per_device = 1
    while (per_device < MAX_AUTO_BATCH_PER_DEVICE
           and estimate_bytes(height, width, config, per_device + 1) <= AUTO_MEMORY_SHARE * have):
        per_device += 1
    return per_device * len(devices), (f"auto: {per_device} per device x {len(devices)} device(s), "
                                       f"{format_bytes(estimate_bytes(height, width, config, per_device))} "
                                       f"of {format_bytes(have)} free {where} each")


def in_use(device: jax.Device | None = None) -> str:
    """The memory a run holds now: the device's bytes in use (accelerators), else this process's
    resident memory (CPU devices share it)."""
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_in_use" in stats:
        return f"{format_bytes(stats['bytes_in_use'])} on {device.device_kind}"
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return f"{format_bytes(pages * os.sysconf('SC_PAGE_SIZE'))} resident"
    except (OSError, ValueError, IndexError):
        import resource

        return f"{format_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)} peak resident"


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def compiled_bytes(vgg, height: int, width: int, config: StyleConfig, evaluation: WholeImage = WholeImage()
                   ) -> int | None:
    """XLA's memory analysis of the compiled step loop at H x W under ``evaluation`` (arguments +
    temporaries + outputs, donated buffers once). Compiles, but allocates nothing: shapes only."""
    program = Program.build(config, vgg, 10, evaluation)
    params = program.objective.params(vgg)
    weights = loss_weights(config)
    image = jax.ShapeDtypeStruct((height, width, 3), jnp.float32)
    targets = jax.eval_shape(lambda c, s: compute_targets(params, c, s, objective=program.objective), image, image)
    layout = None if evaluation.blocking is None else evaluation.blocking.layout(
        height, width, program.objective.layers, program.objective.winograd_layers)
    if layout is not None:
        targets = jax.eval_shape(lambda t: pad_targets(t, layout), targets)
    state = jax.eval_shape(lambda x, t: init_state(params, x, t, weights, program=program), image, targets)
    compiled = run_chunk.lower(params, state, targets, weights, jnp.int32(10), program=program).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    return int(analysis.argument_size_in_bytes + analysis.temp_size_in_bytes + analysis.output_size_in_bytes
               - analysis.alias_size_in_bytes)
