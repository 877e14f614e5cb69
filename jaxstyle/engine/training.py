"""Training of a feed-forward style network: Johnson, Alahi & Fei-Fei, "Perceptual Losses for
Real-Time Style Transfer" (ECCV 2016), with conditional instance norm for several styles (Dumoulin,
Shlens & Kudlur, ICLR 2017). Pure, jit-compiled, data-parallel.

The loss is the objective :func:`jaxstyle.stylize` minimises (:func:`jaxstyle.objective.terms.loss_terms`:
the same VGG-19, layers, layer weights, content/style/TV weights and style loss), so a network's
output and an optimised image are scored on one scale: for each image x of the batch, with y its
output for its style s, the terms of y against the content features of x and the style targets of
s, averaged over the batch. Each style image's targets are computed once
(:func:`style_targets_for_training`). Optionally a temporal term (:mod:`jaxstyle.objective.warps`).

Data parallel: a 1-D ``("data",)`` mesh over every device (of every process), the global batch
split along its first axis, parameters, optimizer state, VGG weights and targets replicated. The
loss is the global batch mean, so XLA's partitioner averages the gradients (an all-reduce); no
pmap. The result depends on the device count only through float summation order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.typing import ArrayLike

from jaxstyle.config import StyleConfig, is_integer
from jaxstyle.engine.sharding import batch_mesh
from jaxstyle.model.transformer import TransformerNet, init_network
from jaxstyle.model.vgg import VGG19, check_image_size
from jaxstyle.objective.color import RGB_TO_YIQ, YIQ_TO_RGB, grey, luminance
from jaxstyle.objective.inputs import check_image
from jaxstyle.objective.resample import resize, scaled
from jaxstyle.objective.targets import content_targets, layer_sizes, statistic_targets, style_parts_jit
from jaxstyle.objective.terms import Objective, loss_terms, loss_weights
from jaxstyle.objective.warps import temporal_term

DATA = "data"  # the mesh axis the batch is split along
MAX_SHIFT = 0.04  # the temporal term's largest displacement, a fraction of the image's longer side
FLOW_NOISE = 0.02  # std of the noise added to the warped input (images in [0, 1])


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
    """The static (compile-time) part of training; hashable. objective: as ``stylize``'s;
    network: the :class:`~jaxstyle.model.transformer.TransformerNet`; preserve_colors: None or
    "luminance" (the network sees and is scored on grey images, as ``stylize`` optimises one);
    temporal: whether the loss has the temporal term, with flows of at most ``max_shift`` of the
    longer side and input noise of std ``flow_noise``."""

    objective: Objective
    network: TransformerNet
    preserve_colors: str | None = None
    temporal: bool = False
    max_shift: float = MAX_SHIFT
    flow_noise: float = FLOW_NOISE

    @classmethod
    def build(cls, config: StyleConfig, vgg: VGG19, network: TransformerNet, *,
              temporal_weight: float = 0.0) -> TrainingSetup:
        """The setup of ``network`` trained with ``config``'s objective on ``vgg``; the temporal
        term is on when ``temporal_weight`` > 0. What ``stylize`` decides per content image has
        no single value in training and is refused: histogram colour matching (the style recoloured
        to each content), coarse-to-fine scales and style blend weights (a multi-style network
        blends at apply time)."""
        if config.preserve_colors not in (None, "luminance"):
            raise ValueError(f"expected preserve_colors None or 'luminance' for training, got "
                             f"{config.preserve_colors!r} (histogram matching recolours the style to each content)")
        if config.scales:
            raise ValueError(f"expected no coarse-to-fine scales for training, got {config.scales}")
        if config.style_blend is not None:
            raise ValueError("expected no style blend weights for training: each style is trained on its own, "
                             "a multi-style network mixes them when it is applied")
        check_temporal_weight(temporal_weight)
        return cls(Objective.build(config, vgg), network, config.preserve_colors, temporal=temporal_weight > 0)


def check_temporal_weight(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"expected temporal_weight to be a finite number >= 0, got {value!r}")


def training_weights(config: StyleConfig, *, temporal_weight: float = 0.0) -> dict:
    """The traced loss weights: ``config``'s (:func:`~jaxstyle.objective.terms.loss_weights`) and
    ``temporal_weight``, float32."""
    check_temporal_weight(temporal_weight)
    return {**loss_weights(config), "temporal_weight": jnp.float32(temporal_weight)}


def network_input(images: jax.Array, preserve_colors: str | None) -> jax.Array:
    """What the network sees of ``images`` [..., 3] in [0, 1]: the images, or under "luminance"
    their luminance (Y of YIQ) as grey RGB, as ``stylize`` optimises a grey image then."""
    if preserve_colors != "luminance":
        return images
    y = jnp.clip(images @ jnp.asarray(RGB_TO_YIQ[0], images.dtype), 0.0, 1.0)
    return jnp.repeat(y[..., None], 3, axis=-1)


def recombined_luminance(output: jax.Array, images: jax.Array) -> jax.Array:
    """The luminance of ``output`` with the chroma (I, Q) of ``images`` (both [..., 3]), in [0, 1]:
    :func:`jaxstyle.objective.color.recombine_luminance` in JAX."""
    yiq = images @ jnp.asarray(RGB_TO_YIQ.T, images.dtype)
    yiq = yiq.at[..., 0].set(output @ jnp.asarray(RGB_TO_YIQ[0], output.dtype))
    return jnp.clip(yiq @ jnp.asarray(YIQ_TO_RGB.T, images.dtype), 0.0, 1.0)


def style_targets_for_training(vgg_params, styles: Sequence[ArrayLike], setup: TrainingSetup, size: int, *,
                               style_size: int | None = None) -> dict:
    """The style targets of each style image, stacked on a leading axis [S, ...] in the order of
    ``styles`` (float32 [h, w, 3] in [0, 1], any sizes; S = the network's styles): Gram matrices
    [S, C, C], W2 targets or sliced targets ({sorted [S, N, K], projections [S, C, K]}, N the pixel
    count at each style layer of a ``size`` x ``size`` image), as ``stylize`` makes them for a
    ``size`` x ``size`` content. ``vgg_params``: ``setup.objective.params(vgg)``.

    Style size: as the CLI's ``stylize`` (its ``--style-size``, default ``--size``), each style image
    is resized (Lanczos) so that its longer side is ``style_size`` (default ``size``), whatever
    its original size. Under "luminance" a style image becomes its grey luminance; ``stylize``
    also matches its mean and std to each content's, which one target for all contents cannot do."""
    objective = setup.objective
    if len(styles) != setup.network.styles:
        raise ValueError(f"expected {setup.network.styles} style images (one per style of the network), "
                         f"got {len(styles)}")
    if not is_integer(size) or size < 1:
        raise ValueError(f"expected the training size to be an integer >= 1 px, got {size!r}")
    style_size = size if style_size is None else style_size
    if not is_integer(style_size) or style_size < 1:
        raise ValueError(f"expected the style size to be an integer >= 1 px, got {style_size!r}")
    check_image_size(int(size), int(size), objective.layers, "a training image")
    sizes = layer_sizes(vgg_params, (int(size), int(size)), objective)
    per_style = []
    for i, style in enumerate(styles):
        name = f"style image {i + 1}"
        image = np.asarray(check_image(style, name))
        if setup.preserve_colors == "luminance":
            image = grey(luminance(image))
        shape = scaled(image.shape, style_size / max(image.shape[:2]))
        check_image_size(*shape, objective.style_layers, f"{name} at {style_size} px")
        parts = style_parts_jit(vgg_params, resize(jnp.asarray(image), shape), objective=objective)
        per_style.append(parts if objective.style_loss == "gram"
                         else statistic_targets([parts], (1.0,), objective, sizes, False))
    return jax.tree.map(lambda *t: jnp.stack(t), *per_style)


def check_batch(images, style_index, setup: TrainingSetup, targets, vgg_params) -> None:
    """ValueError at trace time unless images are [B, H, W, 3] large enough for the objective's
    layers, style_index [B], and (sliced) the targets were made for H x W."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected training images float [B, H, W, 3], got shape {images.shape}")
    if style_index.shape != images.shape[:1]:
        raise ValueError(f"expected style_index [{images.shape[0]}] (one per image), got shape {style_index.shape}")
    check_image_size(images.shape[1], images.shape[2], setup.objective.layers, "a training image")
    if setup.objective.style_loss == "sliced":
        sizes = layer_sizes(vgg_params, images.shape[1:3], setup.objective)
        made = {n: t["sorted"].shape[1] for n, t in targets.items()}
        if made != sizes:
            raise ValueError(f"expected training images of the size the sliced targets were made for, got "
                             f"{images.shape[2]}x{images.shape[1]} px")


def loss_fn(net_params, vgg_params, targets: dict, weights: dict, setup: TrainingSetup, images: jax.Array,
            style_index: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """The training loss of the network on a batch, and the batch means of its weighted terms
    {content, style, tv, range, total} (and temporal): scalars, float32.

    images: float32 [B, H, W, 3] in [0, 1]; style_index: int [B], each image's style (row of
    ``targets``, from :func:`style_targets_for_training`); weights: :func:`training_weights`;
    key: the PRNG key of the temporal term's flows (needed when ``setup.temporal``). For each
    image x (grey under "luminance") the network's output y = net(x, one_hot(style)) is scored by
    :func:`~jaxstyle.objective.terms.loss_terms` against the content features of x and its style's
    targets; the loss is the mean of the totals over the batch. The range term is 0 (the output is
    in [0, 1]), kept so that the terms are ``stylize``'s. Temporal: ``temporal_weight`` times the
    mean squared difference, over the pixels whose source lies inside the image, between the
    output of a warped input and the warped output (:func:`~jaxstyle.objective.warps.temporal_term`)."""
    objective = setup.objective
    images, style_index = jnp.asarray(images, jnp.float32), jnp.asarray(style_index)
    check_batch(images, style_index, setup, targets, vgg_params)
    x = network_input(images, setup.preserve_colors)
    mix = jax.nn.one_hot(style_index, setup.network.styles, dtype=jnp.float32)

    def apply(inputs):  # the images, or the images and their warped versions
        return setup.network.apply({"params": net_params}, inputs, jnp.tile(mix, (inputs.shape[0] // len(mix), 1)))

    if setup.temporal:
        if key is None or "temporal_weight" not in weights:
            raise ValueError("expected a PRNG key and weights['temporal_weight'] for the temporal term, got none")
        errors, y = temporal_term(apply, key, x, max_shift=setup.max_shift, noise=setup.flow_noise)
    else:
        y = apply(x)

    def one(x_b, y_b, s):
        content = jax.lax.stop_gradient(content_targets(vgg_params, x_b, objective))
        style = jax.tree.map(lambda t: t[s], targets)
        return loss_terms(vgg_params, y_b, {"content": content, "style": style}, weights, objective)

    terms = jax.vmap(one)(x, y, style_index)
    if setup.temporal:
        terms["temporal"] = weights["temporal_weight"] * errors
        terms["total"] = terms["total"] + terms["temporal"]
    means = {k: jnp.mean(v) for k, v in terms.items()}
    return means["total"], means


class TrainState(NamedTuple):
    """step: int32 scalar, steps taken; params: the network's; opt_state: the optimizer's."""

    step: jax.Array
    params: dict
    opt_state: optax.OptState


def init_train_state(key: jax.Array, setup: TrainingSetup, optimizer: optax.GradientTransformation,
                     size: int) -> TrainState:
    """A fresh state: the network's parameters from ``key`` (initialised on ``size`` x ``size``)."""
    params = init_network(key, setup.network, size)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))


def make_optimizer(learning_rate: float = 1e-3, *, steps: int | None = None, warmup: int = 0,
                   clip_norm: float | None = None) -> optax.GradientTransformation:
    """optax Adam (Johnson et al.: Adam, learning rate 1e-3). Schedule: a linear warmup from 0
    over ``warmup`` steps, then constant, or with ``steps`` a cosine decay to 0 at ``steps``
    (``optax.warmup_cosine_decay_schedule``). ``clip_norm``: clip the gradient's global norm
    first (off by default: the loss is not normalised, its gradient norm is the objective's scale,
    and Adam is invariant to that scale)."""
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
            0 < learning_rate < math.inf):
        raise ValueError(f"expected learning_rate to be a finite number > 0, got {learning_rate!r}")
    if not is_integer(warmup) or warmup < 0:
        raise ValueError(f"expected warmup to be an integer >= 0 (steps), got {warmup!r}")
    if steps is not None and (not is_integer(steps) or steps <= warmup):
        raise ValueError(f"expected steps to be an integer > warmup ({warmup}), got {steps!r}")
    if clip_norm is not None and not (isinstance(clip_norm, (int, float)) and 0 < clip_norm < math.inf):
        raise ValueError(f"expected clip_norm to be a finite number > 0 or None, got {clip_norm!r}")
    lr = float(learning_rate)
    if steps is not None:
        schedule = optax.warmup_cosine_decay_schedule(0.0, lr, int(warmup), int(steps), end_value=0.0)
    elif warmup:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, int(warmup)), optax.constant_schedule(lr)],
                                        [int(warmup)])
    else:
        schedule = lr
    adam = optax.adam(schedule)
    return adam if clip_norm is None else optax.chain(optax.clip_by_global_norm(float(clip_norm)), adam)


def training_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D ``("data",)`` mesh over ``devices`` (default: every device of every process)."""
    return batch_mesh(jax.devices() if devices is None else devices, DATA)


def check_divisible(batch: int, mesh: Mesh) -> None:
    if batch % mesh.devices.size:
        raise ValueError(f"expected a global batch divisible by the {mesh.devices.size} devices of the mesh, "
                         f"got {batch}")


def global_batch(local, mesh: Mesh):
    """This process's part of the batch (a pytree of arrays [b, ...]) as global arrays split along
    the mesh's ``data`` axis: with one process the batch itself; with several, the processes'
    parts concatenated in process order (``jax.make_array_from_process_local_data``)."""
    sharding = NamedSharding(mesh, PartitionSpec(DATA))
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def put(leaf):
        if jax.process_count() == 1:
            check_divisible(leaf.shape[0], mesh)
            return jax.device_put(leaf, sharding)
        if leaf.shape[0] % local_devices:
            raise ValueError(f"expected a batch per process divisible by its {local_devices} devices, "
                             f"got {leaf.shape[0]}")
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree.map(put, local)


def placed(tree, sharding: NamedSharding):
    """Every leaf of ``tree`` with ``sharding``: as it is when it has it, else put there (with
    several processes: replicated values from each process's copy; a batch must come from
    :func:`global_batch`)."""
    def put(leaf):
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        if sharding.spec != PartitionSpec():
            raise ValueError("expected the batch as global arrays (jaxstyle.engine.training.global_batch) with "
                             "several processes, got process-local ones")
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def train_step(state: TrainState, vgg_params, targets: dict, weights: dict, images: ArrayLike,
               style_index: ArrayLike, key: jax.Array, *, setup: TrainingSetup,
               optimizer: optax.GradientTransformation, mesh: Mesh) -> tuple[TrainState, dict]:
    """One optimizer step on the global batch ``images`` [B, H, W, 3] (B divisible by the mesh's
    devices) with ``style_index`` [B]: the new state (``state`` is donated) and metrics {loss,
    the terms' batch means, grad_norm, finite}. The state, VGG parameters, targets and weights are
    replicated over ``mesh`` (:func:`training_mesh`), the batch split along its ``data`` axis; each is
    put there unless it is there already. The temporal term's key is ``fold_in(key, state.step)``,
    so a resumed run draws the flows of an uninterrupted one. A step whose loss or gradient is not
    finite leaves the parameters and optimizer state as they were (``finite`` False; step counted)."""
    check_divisible(np.shape(images)[0], mesh)
    if not isinstance(style_index, jax.Array):
        index = np.asarray(style_index)
        if index.size and (index.min() < 0 or index.max() >= setup.network.styles):
            raise ValueError(f"expected style indices in [0, {setup.network.styles}), "
                             f"got {sorted(set(index.tolist()))}")
    replicated = NamedSharding(mesh, PartitionSpec())
    state, vgg_params, targets, weights, key = placed((state, vgg_params, targets, weights, key), replicated)
    images, style_index = placed((images, style_index), NamedSharding(mesh, PartitionSpec(DATA)))
    return compiled_step(state, vgg_params, targets, weights, images, style_index, key, setup=setup,
                         optimizer=optimizer, mesh=mesh)


@partial(jax.jit, static_argnames=("setup", "optimizer", "mesh"), donate_argnums=(0,))
def compiled_step(state: TrainState, vgg_params, targets, weights, images, style_index, key, *,
                  setup: TrainingSetup, optimizer: optax.GradientTransformation, mesh: Mesh
                  ) -> tuple[TrainState, dict]:
    """:func:`train_step` once its inputs are placed."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, terms), grads = grad_fn(state.params, vgg_params, targets, weights, setup, images, style_index,
                                   jax.random.fold_in(key, state.step))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
    new = TrainState(state.step + 1, keep(params, state.params), keep(opt_state, state.opt_state))
    new = jax.lax.with_sharding_constraint(new, NamedSharding(mesh, PartitionSpec()))
    return new, {**terms, "loss": loss, "grad_norm": grad_norm, "finite": finite}


@partial(jax.jit, static_argnames=("network", "preserve_colors"))
def apply_network(net_params, network: TransformerNet, images: ArrayLike, mix: ArrayLike, *,
                  preserve_colors: str | None = None) -> jax.Array:
    """The network's output float32 [B, H, W, 3] in [0, 1] for ``images`` float32 [B, H, W, 3] in
    [0, 1] (any H, W) and ``mix`` float32 [B, styles] (rows summing to 1; one-hot: one style).
    ``preserve_colors="luminance"``: the network sees the images' luminance (grey, as it was
    trained under "luminance") and its output's luminance gets the images' chroma back. Sharded
    inputs give sharded outputs (the computation follows the data)."""
    images, mix = jnp.asarray(images, jnp.float32), jnp.asarray(mix, jnp.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images float [B, H, W, 3], got shape {images.shape}")
    if mix.shape != (images.shape[0], network.styles):
        raise ValueError(f"expected a style mix [{images.shape[0]}, {network.styles}] (one row per image), "
                         f"got shape {mix.shape}")
    y = network.apply({"params": net_params}, network_input(images, preserve_colors), mix)
    return recombined_luminance(y, images) if preserve_colors == "luminance" else y
