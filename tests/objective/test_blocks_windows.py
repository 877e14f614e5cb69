"""The window primitives every blocked pass is made of: adding windows back is the adjoint of cutting
them, and the blocks' inner regions, placed by their windows, cover every pixel of the image once at
every pooling level (and nothing of the padding)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.objective import blocks


@pytest.mark.parametrize("level", [0, 1, 2])
def test_adding_windows_back_is_the_adjoint_of_cutting_them(level):
    """<cut(a), w> == <a, add(w)>: the gradient pass adds exactly what the forward pass cut."""
    rng = np.random.default_rng(level)
    origins = jnp.asarray([[0, 0], [8, 4], [4, 12], [8, 12]], jnp.int32)  # overlapping, on the 4 px grid
    shape = (16 >> level, 12 >> level, 3)
    array = jnp.asarray(rng.standard_normal(((24 >> level), (24 >> level), 3)), jnp.float32)
    windows = jnp.asarray(rng.standard_normal((4,) + shape), jnp.float32)
    cut = blocks.cut_windows(array, origins, shape, level)
    added = blocks.add_windows(jnp.zeros_like(array), windows, origins, level)
    np.testing.assert_allclose(float(jnp.vdot(cut, windows)), float(jnp.vdot(array, added)), rtol=1e-5)
    assert np.array_equal(np.asarray(cut[1]), np.asarray(array[8 >> level:, 4 >> level:][: shape[0], : shape[1]]))


@pytest.mark.parametrize("shape,layers,block", [((44, 52), ("relu2_2",), 12), ((41, 37), ("relu2_1", "relu1_1"), 10),
                                                ((100, 90), ("relu5_1",), 32)])
def test_inner_regions_cover_each_pixel_once_at_every_level(shape, layers, block):
    layout = blocks.block_layout(*shape, layers, block)
    assert layout.count > 1
    origins, inner = layout.chunks(3)
    levels = range(int(np.log2(layout.unit)) + 1)
    for level in levels:
        window = (layout.rows.window >> level, layout.cols.window >> level)
        total = jnp.zeros((layout.rows.padded >> level, layout.cols.padded >> level))
        for o, i in zip(origins, inner):  # the last chunk's filler blocks must add nothing
            masks = blocks.inner_masks(jnp.asarray(o), jnp.asarray(i), window, level)
            total = blocks.add_windows(total, masks, jnp.asarray(o), level)
        h, w = shape[0] >> level, shape[1] >> level
        expected = np.zeros(total.shape)
        expected[:h, :w] = 1.0
        assert np.array_equal(np.asarray(total), expected), level
