"""Where the blocks lie: the receptive halo of the deepest layer and the grid windows are placed on
(:func:`receptive_halo`), the inner regions tiling each axis and their windows (:func:`axis_blocks`),
an image's rows x columns of blocks and their chunks (:class:`BlockLayout`), and the options of a
blocked evaluation (:class:`Blocking`). Plain numbers: nothing here calls the network."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxstyle.model.vgg import LAYER_INDEX, LAYER_NAMES

MIN_BLOCK_UNITS = 2  # a block's inner side is at least two pooling units (32 px under relu5_1)


def receptive_halo(layers: tuple[str, ...], winograd_layers: tuple[str, ...] = ()) -> tuple[int, int]:
    """(halo, unit) in input pixels for the deepest of ``layers``: ``unit`` is the grid windows are
    placed on (``2 ** poolings``, so the poolings keep the image's grid, and 4 positions at the depth
    of each Winograd layer, so its 4x4 tiles do and it rounds as on the whole image), ``halo`` (a
    multiple of it) how far a window's own edge spoils its activations: each 3x3 convolution at
    depth k adds ``2 ** k`` px, each pooling rounds up."""
    deepest = max(LAYER_INDEX[n] for n in layers)
    spoiled, level, unit = 0, 0, 1  # positions from a window's edge, at the current level
    for name in LAYER_NAMES[: deepest + 1]:
        if name.startswith("conv"):
            spoiled += 1
            if name in winograd_layers:
                unit = max(unit, 4 * 2 ** level)
        elif name.startswith("pool"):
            spoiled, level = -(-spoiled // 2), level + 1
    unit = max(unit, 2 ** level)
    return -(-spoiled * 2 ** level // unit) * unit, unit


@dataclasses.dataclass(frozen=True)
class AxisBlocks:
    """The blocks along one axis: the image's ``length``, the ``padded`` length (a multiple of the
    unit), the ``window`` length (all windows alike), each window's ``starts`` and the inner
    regions' ``bounds`` (``len(starts) + 1`` boundaries from 0 to ``length``)."""

    length: int
    padded: int
    window: int
    starts: tuple[int, ...]
    bounds: tuple[int, ...]


def axis_blocks(length: int, block: int, halo: int, unit: int) -> AxisBlocks:
    """Inner regions of about ``block`` px tiling ``length`` (boundaries on the unit grid), each
    window its region plus ``halo`` on each side, kept inside the padded length."""
    padded = -(-length // unit) * unit
    count = max(1, -(-length // block))
    if count == 1:
        return AxisBlocks(length, padded, padded, (0,), (0, length))
    inner = [0] + [round(i * length / count / unit) * unit for i in range(1, count)] + [length]
    if any(b <= a for a, b in zip(inner, inner[1:])):
        raise ValueError(f"expected a block size of at least {MIN_BLOCK_UNITS * unit} px, got {block}")
    need = [min(padded, -(-(b + halo) // unit) * unit) - max(0, a - halo) for a, b in zip(inner, inner[1:])]
    window = min(padded, max(need))
    starts = tuple(min(max(0, a - halo), padded - window) for a in inner[:-1])
    return AxisBlocks(length, padded, window, starts, tuple(inner))


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """The blocks of an image: rows x columns of them (row-major)."""

    rows: AxisBlocks
    cols: AxisBlocks
    unit: int

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    @property
    def window(self) -> tuple[int, int]:
        return self.rows.window, self.cols.window

    @property
    def padded(self) -> tuple[int, int]:
        return self.rows.padded, self.cols.padded

    @property
    def extent(self) -> tuple[int, int]:
        return self.rows.length, self.cols.length

    @property
    def reaches_past_image(self) -> bool:
        """Whether some window reaches past the image (then the network zeroes what lies there)."""
        return self.padded != self.extent

    def chunks(self, per_chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """(origins [chunks, per_chunk, 2], inner [chunks, per_chunk, 4]: row0, row1, col0, col1),
        int32; the last chunk is filled with empty blocks (no inner region)."""
        origins, inner = [], []
        for r, r0, r1 in zip(self.rows.starts, self.rows.bounds, self.rows.bounds[1:]):
            for c, c0, c1 in zip(self.cols.starts, self.cols.bounds, self.cols.bounds[1:]):
                origins.append((r, c))
                inner.append((r0, r1, c0, c1))
        while len(origins) % per_chunk:
            origins.append((0, 0))
            inner.append((0, 0, 0, 0))
        return (np.asarray(origins, np.int32).reshape(-1, per_chunk, 2),
                np.asarray(inner, np.int32).reshape(-1, per_chunk, 4))


def block_layout(height: int, width: int, layers: tuple[str, ...], block_size: int,
                 winograd_layers: tuple[str, ...] = ()) -> BlockLayout:
    """The layout of an ``height`` x ``width`` image in blocks of about ``block_size`` px for ``layers``
    (and the network's ``winograd_layers``)."""
    halo, unit = receptive_halo(layers, winograd_layers)
    if block_size < MIN_BLOCK_UNITS * unit:
        raise ValueError(f"expected a block size of at least {MIN_BLOCK_UNITS * unit} px for layer "
                         f"{max(layers, key=LAYER_INDEX.__getitem__)}, got {block_size}")
    block = max(unit, block_size // unit * unit)
    return BlockLayout(axis_blocks(height, block, halo, unit), axis_blocks(width, block, halo, unit), unit)


@dataclasses.dataclass(frozen=True)
class Blocking:
    """How images are evaluated block by block; hashable (a jit static argument).

    block_size: the inner side of a block in px (rounded down to the pooling grid).
    per_chunk: blocks evaluated together in one batched network call (a multiple of the mesh's devices).
    whole_up_to: images of at most this many pixels are evaluated whole (the coarse stages that fit).
    mesh: a one-axis mesh (``"blocks"``) to split each chunk's windows over, or None.
    """

    block_size: int
    per_chunk: int = 1
    whole_up_to: int = 0
    mesh: Mesh | None = None

    def __post_init__(self):
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"expected block_size to be a positive integer (px), got {self.block_size!r}")
        if isinstance(self.per_chunk, bool) or not isinstance(self.per_chunk, int) or self.per_chunk < 1:
            raise ValueError(f"expected per_chunk to be a positive integer, got {self.per_chunk!r}")
        if self.mesh is not None and self.per_chunk % self.mesh.devices.size:
            raise ValueError(f"expected per_chunk to be a multiple of the mesh's {self.mesh.devices.size} devices, "
                             f"got {self.per_chunk}")

    def layout(self, height: int, width: int, layers: tuple[str, ...], winograd_layers: tuple[str, ...] = ()
               ) -> BlockLayout | None:
        """The layout of an image of this size, or None where it is evaluated whole (small enough,
        or a single block)."""
        if height * width <= self.whole_up_to:
            return None
        layout = block_layout(height, width, layers, self.block_size, winograd_layers)
        return layout if layout.count > 1 else None

    def spread(self, windows: jax.Array) -> jax.Array:
        """Windows [per_chunk, ...] split over the mesh's devices (as they are without one)."""
        if self.mesh is None:
            return windows
        return jax.lax.with_sharding_constraint(windows, NamedSharding(self.mesh, PartitionSpec(
            self.mesh.axis_names[0])))
