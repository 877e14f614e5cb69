"""Meshes and shardings: the batch axis of many pairs, or the height and width of one big image.
Meshes are passed in, never global.

Rule for uneven batches: a batch of B pairs on D devices is padded to ``ceil(B / D) * D``
by repeating its last pair; the padded pairs are computed and thrown away.

Spatial sharding (one image too big for one device): the image and everything of its shape
(the L-BFGS history, the content targets) are split into tiles over a 2-D ``("height",
"width")`` mesh; XLA's partitioner inserts the halo exchanges of the 3x3 convolutions and
the all-reduce of the Gram matrices. Nothing else changes: same program, same result up to
float summation order.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def batch_mesh(devices: Sequence[jax.Device] | None = None, axis_name: str = "batch") -> Mesh:
    """A one-axis mesh over ``devices`` (default: this process's local devices)."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("expected at least one device for the mesh, got none")
    return Mesh(np.array(devices), (axis_name,))


def padded_size(n: int, devices: int) -> int:
    return -(-n // devices) * devices


def pad_batch(tree, devices: int):
    """Pad every leaf's leading axis to a multiple of ``devices`` by repeating the last entry."""
    def pad(leaf):
        leaf = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        n = leaf.shape[0]
        extra = padded_size(n, devices) - n
        if extra == 0:
            return leaf
        xp = np if isinstance(leaf, np.ndarray) else jax.numpy
        return xp.concatenate([leaf, xp.repeat(leaf[-1:], extra, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def shard_batch(tree, mesh: Mesh):
    """Place every leaf with its leading axis split over the mesh's first axis."""
    axis = mesh.axis_names[0]
    size = mesh.shape[axis]

    def put(leaf):
        if leaf.shape[0] % size:
            raise ValueError(f"expected a batch divisible by the {size} devices of the mesh, got {leaf.shape[0]} "
                             f"(pad it with jaxstyle.engine.sharding.pad_batch)")
        return jax.device_put(leaf, NamedSharding(mesh, PartitionSpec(axis)))

    return jax.tree.map(put, tree)


def replicate(tree, mesh: Mesh):
    """Place every leaf whole on every device of the mesh (the VGG parameters)."""
    return jax.tree.map(lambda leaf: jax.device_put(leaf, NamedSharding(mesh, PartitionSpec())), tree)


def spatial_mesh(height: int, width: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``("height", "width")`` mesh over ``devices``, its shape chosen so tiles are near square."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("expected at least one device for the mesh, got none")
    return Mesh(np.array(devices).reshape(spatial_grid(height, width, len(devices))), ("height", "width"))


def spatial_grid(height: int, width: int, n: int) -> tuple[int, int]:
    """(rows, columns) with rows * columns = n whose tiles are closest to square."""
    rows = min((r for r in range(1, n + 1) if n % r == 0),
               key=lambda r: abs(np.log((height / r) / (width / (n // r)))))
    return rows, n // rows


def shard_spatially(image, mesh: Mesh):
    """Place an [H, W, C] array split over the mesh's ("height", "width") axes."""
    return jax.device_put(image, NamedSharding(mesh, PartitionSpec(*mesh.axis_names[:2])))
