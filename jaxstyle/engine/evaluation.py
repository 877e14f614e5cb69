"""How the value and gradient of the objective are computed for an image: one interface, several
strategies, chosen per run and part of its static :class:`~jaxstyle.engine.program.Program`.

A strategy gives the weighted terms of an iterate (``terms``) and the scalar loss function the
optimizer differentiates (``loss``), the ``blocking`` its targets are computed with (None: whole),
and places the run's arrays (``place_image`` for everything of the image's shape, ``place_shared``
for the network's parameters and the weights). :class:`WholeImage` evaluates the network on the
whole image on one device; :class:`SpatiallySharded` evaluates the same function with the image
split into height x width tiles over a mesh of devices (XLA's SPMD partitioner exchanges the
halos); :class:`BlockByBlock` evaluates it block by block (:mod:`jaxstyle.objective.blocks`): the
whole image's value and gradient with one block's activations in memory at a time, for images
beyond one device's memory on a single device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax

from jaxstyle.engine.sharding import replicate, shard_spatially
from jaxstyle.objective.blocks import Blocking, blocked_loss_terms
from jaxstyle.objective.style_losses import require_whole
from jaxstyle.objective.terms import Objective, loss_terms


@dataclasses.dataclass(frozen=True)
class WholeImage:
    """The objective on the whole image, on the devices its arrays are on."""

    blocking = None  # targets computed whole

    def terms(self, params, targets: dict, weights: dict, objective: Objective) -> Callable[[jax.Array], dict]:
        """The weighted terms (content, style, tv, range, total) as a function of the iterate x [H, W, 3]."""
        return lambda x: loss_terms(params, x, targets, weights, objective)

    def loss(self, params, targets: dict, weights: dict, objective: Objective) -> Callable[[jax.Array], jax.Array]:
        """The total loss as a function of the iterate x [H, W, 3] (differentiable by autodiff)."""
        terms = self.terms(params, targets, weights, objective)
        return lambda x: terms(x)["total"]

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


@dataclasses.dataclass(frozen=True)
class BlockByBlock(WholeImage):
    """The same objective evaluated block by block as ``blocking`` says (images of at most
    ``blocking.whole_up_to`` pixels, or of one block, whole); with ``blocking.mesh`` each chunk
    of blocks is split over its devices, and the image and weights are on all of them."""

    blocking: Blocking = None

    def terms(self, params, targets: dict, weights: dict, objective: Objective) -> Callable[[jax.Array], dict]:
        def terms(x):
            layout = self.blocking.layout(*x.shape[:2], objective.layers, objective.winograd_layers)
            if layout is None:
                return loss_terms(params, x, targets, weights, objective)
            if objective.style_loss != "gram":
                require_whole(objective.style_loss)
            return blocked_loss_terms(params, x, targets, weights, objective, layout, self.blocking)

        return terms

    def place_image(self, array):
        return array if self.blocking.mesh is None else replicate(array, self.blocking.mesh)

    def place_shared(self, tree):
        return tree if self.blocking.mesh is None else replicate(tree, self.blocking.mesh)
