"""Which of the network's 3x3 convolutions are computed by Winograd F(4x4, 3x3) (:mod:`.winograd`)
and which directly (``lax.conv``), by ``conv`` mode, backend and precision."""

from __future__ import annotations

from jaxstyle.model.vgg import CONV_KERNEL_SHAPES, LAYER_INDEX, canonical_layer

# Layers where Winograd F(4x4, 3x3) measured at least 15% faster than lax.conv on XLA:CPU
# (forward + input gradient, at 512x384 and 256x192: benchmarks/conv_layers.py, table in
# benchmarks/README.md): those with 256 or more input channels.
CPU_WINOGRAD_LAYERS = tuple(n for n, shape in CONV_KERNEL_SHAPES.items() if shape[2] >= 256)


def winograd_layers(mode: str, layers: tuple[str, ...], platform: str, precision: str = "float32"
                    ) -> tuple[str, ...]:
    """The conv layers (up to the deepest of ``layers``) that ``conv=mode`` computes by Winograd.
    Never in bfloat16: the transforms' coefficients (up to 8 and 1/24) cost more than its 8-bit
    mantissa can spare (``conv="winograd"`` with bfloat16 is refused by StyleConfig)."""
    if precision != "float32":
        return ()
    deepest = max(LAYER_INDEX[canonical_layer(n)] for n in layers)
    convs = [n for n in CONV_KERNEL_SHAPES if LAYER_INDEX[n] <= deepest]
    if mode == "winograd":
        return tuple(n for n in convs if n != "conv1_1")  # 3 input channels: nothing to gain
    if mode == "auto" and platform == "cpu":
        return tuple(n for n in convs if n in CPU_WINOGRAD_LAYERS)
    return ()
