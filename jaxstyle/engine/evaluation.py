"""How the value and gradient of the objective are computed for an image: one interface, several
strategies, chosen per run and part of its static :class:`~jaxstyle.engine.program.Program`.

A strategy gives the scalar loss function the optimizer differentiates (``loss``) and places the
run's arrays (``place_image`` for everything of the image's shape, ``place_shared`` for the
network's parameters and the weights). :class:`WholeImage` evaluates the network on the whole
image on one device; :class:`SpatiallySharded` evaluates the same function with the image split
into height x width tiles over a mesh of devices (XLA's SPMD partitioner exchanges the halos), for
images beyond one device's memory. Block-by-block evaluation (the whole-image value and gradient
assembled from blocks) plugs in here as another strategy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax

from jaxstyle.engine.sharding import replicate, shard_spatially
from jaxstyle.objective.terms import Objective, loss_terms


@dataclasses.dataclass(frozen=True)
class WholeImage:
    """The objective on the whole image, on the devices its arrays are on."""

    def loss(self, params, targets: dict, weights: dict, objective: Objective) -> Callable[[jax.Array], jax.Array]:
        """The total loss as a function of the iterate x [H, W, 3] (differentiable by autodiff)."""
        return lambda x: loss_terms(params, x, targets, weights, objective)["total"]

    def place_image(self, array):
        return array

    def place_shared(self, tree):
        return tree


@dataclasses.dataclass(frozen=True)
class SpatiallySharded(WholeImage):
    """The same objective with the image split over ``mesh`` (a ``("height", "width")`` mesh,
    :func:`jaxstyle.engine.sharding.spatial_mesh`); parameters and weights replicated."""

    mesh: jax.sharding.Mesh = None

    def place_image(self, array):
        return shard_spatially(array, self.mesh)

    def place_shared(self, tree):
        return replicate(tree, self.mesh)
