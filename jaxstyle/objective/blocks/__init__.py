"""The network terms of the objective (content, style) evaluated block by block, for images whose
activations do not fit in memory at once: the value and gradient of the *whole-image* objective
(after Galerne, Raad, Lezama & Morel, "Scaling Painting Style Transfer", EGSR 2024).

The image is cut into blocks whose inner regions tile it; each block is evaluated on a window, its
inner region plus a halo as wide as the receptive field of the deepest layer used, so the
window's activations over the inner region are the whole image's. Window offsets are multiples of
``2 ** poolings`` (the poolings keep the image's grid), and where a window reaches past the image
every convolution's input is zeroed there as the image's own padding is
(:class:`~jaxstyle.model.vgg.VGG19Features` ``extent``).

* Pass 1 (the value): each style layer's Gram sum ``sum F^T F`` over the blocks' inner regions
  (one per region under a content mask) and the content layers' squared differences; the style
  loss of the summed Grams is the whole image's. For ``style_loss="w2"`` the sums are the
  moments' (``sum w``, ``sum w (F - c)``, ``sum w (F - c)(F - c)^T`` about the target's mean ``c``),
  from which the W2 loss is the whole image's too; "sliced" (a sort of every pixel) is refused.
* Pass 2 (the gradient): with ``D = dE/dG`` of the *global* Grams, each block's surrogate
  ``<D, F_b^T F_b> + content_b`` has, over the block's inner features, the gradient of the whole
  objective; its vector-Jacobian product through the window is added into the image's gradient at
  the window's place (windows overlap in their halos: their contributions add). This needs half
  the halo of assembling each block's gradient from its inner region alone, and is exact: every
  inner feature is the same function of the image's pixels as in the whole image.
* With ``normalize_gradients`` a pass between the two sums each layer's feature-gradient L1 norm
  over the blocks, by which pass 2 then scales that layer's gradient.

Blocks are evaluated ``per_chunk`` at a time (one batched network call) inside a ``lax.scan`` over
chunks, all in the one compiled program; with a ``mesh`` each chunk's windows are split over its
devices (XLA reduces the Gram sums across them). Nothing here reads the device: the planner
(:mod:`jaxstyle.engine.planner`) picks the block size and chunk.

Targets of a blocked stage differ from the whole image's in one respect: content features and
region masks are padded to the blocked layout's padded size (:func:`pad_targets`), zeros beyond the
image, so that windows cut from them stay in bounds.

The modules: :mod:`~jaxstyle.objective.blocks.layout` (where blocks and windows lie),
:mod:`~jaxstyle.objective.blocks.windows` (one chunk's windows cut, run, weighed and added back),
:mod:`~jaxstyle.objective.blocks.passes` (the value and gradient passes) and
:mod:`~jaxstyle.objective.blocks.targets` (targets for and from a blocked stage).
"""

from jaxstyle.objective.blocks.layout import (
                                              MIN_BLOCK_UNITS,
                                              AxisBlocks,
                                              Blocking,
                                              BlockLayout,
                                              axis_blocks,
                                              block_layout,
                                              receptive_halo,
)
from jaxstyle.objective.blocks.passes import blocked_loss_terms, network_terms
from jaxstyle.objective.blocks.targets import (
    blocked_content_features,
    blocked_style_grams,
    blocked_style_moments,
    pad_targets,
)
from jaxstyle.objective.blocks.windows import add_windows, cut_region_windows, cut_windows, inner_masks, window_features

__all__ = ["MIN_BLOCK_UNITS", "AxisBlocks", "BlockLayout", "Blocking", "add_windows", "axis_blocks", "block_layout",
           "blocked_content_features", "blocked_loss_terms", "blocked_style_grams", "blocked_style_moments",
           "cut_region_windows", "cut_windows", "inner_masks", "network_terms", "pad_targets", "receptive_halo",
           "window_features"]
