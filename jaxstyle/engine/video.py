"""Video: a run of coupled style-transfer problems, one per frame (Ruder, Dosovitskiy & Brox,
"Artistic style transfer for videos", GCPR 2016; IJCV 2018).

Every frame is the still-image problem of :mod:`jaxstyle.engine.stylize` (same objective, program
and compiled loop) plus the temporal term of :mod:`jaxstyle.objective.temporal`, whose targets
(earlier outputs warped onto the frame, and their reliability weights) are traced inputs: one
program serves every frame, the first included (its weights are zero).

Modes (:class:`~jaxstyle.config.VideoConfig`):

* sequential, one pass: frame after frame. A frame that starts afresh (the first, and the first
  after a scene cut) starts from its content and runs ``first_iterations``; every other frame
  starts from the previous output warped onto it (its content where the flow is unreliable) and
  runs ``iterations`` with the short-term (and optional long-term) temporal term.
* sequential, several passes: Ruder's multi-pass algorithm. Passes alternate direction; each frame
  starts from ``delta c warp(neighbour) + (1 - delta c) current`` (its previous pass's result and
  the neighbour in the pass's direction, already updated in this pass); the temporal term (towards
  that neighbour) from pass ``temporal_from_pass`` on.
* parallel: Jacobi passes. Pass 1 stylizes every frame independently; each later pass updates
  every frame at once from the previous pass's results, pulled towards both neighbours (start:
  Ruder's normalised blend of the frame and its warped neighbours; temporal term towards both, from
  pass ``temporal_from_pass`` on, and never in pass 1, which has no neighbours' results yet).
  The frames of a pass are independent problems: they run vmapped in groups, sharded over all
  devices (and split between processes by ``assign``, with a ``barrier`` after each pass).

Scene cuts: frame i is a cut when the share of its pixels with a reliable match in frame i - 1 of
similar colour, or similar once each frame's exposure is factored out (:mod:`jaxstyle.engine.scenes`),
is below ``cut_threshold``; nothing couples frames across a cut.

Results go to a :class:`FrameStore` (``get``/``put`` by pass and frame): frames already there are
skipped, which is how an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.engine.batch import batched_advance, batched_evaluate, batched_start
from jaxstyle.engine.program import Program
from jaxstyle.engine.run import (
    Progress,
    Stage,
    evaluate,
    init_state,
    restarted,
    resume_point,
    run_chunk,
    run_stages,
)
from jaxstyle.engine.scenes import matched_share
from jaxstyle.engine.sharding import pad_batch, replicate, shard_batch
from jaxstyle.engine.stylize import check_steering
from jaxstyle.model.vgg import VGG19
from jaxstyle.objective import color
from jaxstyle.objective.inputs import check_stage_sizes, initial_image, prepare_pair
from jaxstyle.objective.targets import stage_targets
from jaxstyle.objective.temporal import long_term_weights, pass_start, reliability, warp, warped_start
from jaxstyle.objective.terms import Objective, loss_weights

FlowSource = Callable[[int, int], np.ndarray]  # (a, b) -> the flow from input frame a to frame b [H, W, 2]


class FrameStore(Protocol):
    """Where a video run's frames go: ``put`` after each frame, ``get`` (None when absent)."""

    def get(self, pass_index: int, index: int) -> np.ndarray | None: ...

    def put(self, pass_index: int, index: int, image: np.ndarray, record: FrameRecord) -> None: ...


class MemoryStore:
    """A :class:`FrameStore` in memory."""

    def __init__(self):
        self.frames: dict[tuple[int, int], np.ndarray] = {}

    def get(self, pass_index: int, index: int) -> np.ndarray | None:
        return self.frames.get((pass_index, index))

    def put(self, pass_index: int, index: int, image: np.ndarray, record: FrameRecord) -> None:
        self.frames[pass_index, index] = image


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """One frame of one pass: how it started ("content": afresh; "cut": afresh after a scene
    cut; "warped": the previous output warped; "blend": a later pass's blend; "resumed": found in
    the store), its steps, seconds, weighted loss terms, the share of its pixels matched to the
    previous frame (``matched``; None for the first) and the status ("done" or "nonfinite")."""

    index: int
    pass_index: int
    start: str
    iterations: int
    steps: int
    seconds: float
    losses: dict
    matched: float | None
    status: str


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """records: every frame of every pass run (in order); cuts: the frames that started afresh
    after a scene cut; passes: the passes run; seconds: the wall time; store: where the frames are
    (the last pass's are the output: ``store.get(passes - 1, i)``)."""

    records: list[FrameRecord]
    cuts: list[int]
    passes: int
    seconds: float
    store: FrameStore

    def frames(self, count: int) -> list[np.ndarray]:
        """The output frames 0 .. count - 1 from the store."""
        return [self.store.get(self.passes - 1, i) for i in range(count)]


def memoized_flows(frames: Sequence, flow_function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FlowSource:
    """A :data:`FlowSource` over in-memory ``frames`` by a frame-pair flow function (e.g.
    :class:`jaxstyle.flow.DISFlow`), each flow computed once."""
    cache: dict[tuple[int, int], np.ndarray] = {}

    def flow(a: int, b: int) -> np.ndarray:
        if (a, b) not in cache:
            cache[a, b] = np.asarray(flow_function(frames[a], frames[b]), np.float32)
        return cache[a, b]

    return flow


@jax.jit
def _neighbour(output: jax.Array, flow_ab: jax.Array, flow_ba: jax.Array) -> tuple[jax.Array, jax.Array]:
    """An output of frame b warped onto frame a, and frame a's reliability weights."""
    return warp(output, flow_ab), reliability(flow_ab, flow_ba)


@jax.jit
def _normalised_blend(current: jax.Array, warped: jax.Array, weights: jax.Array, strength: jax.Array) -> jax.Array:
    """The reference multi-pass start with several neighbours: ``(x + b sum_n c_n w_n) / (1 + b sum_n c_n)``,
    b = delta / (1 - delta)."""
    c = strength * weights[..., None]
    return (current + jnp.sum(c * warped, 0)) / (1.0 + jnp.sum(c, 0))


class _Run:
    """The shared state of one video run: network, program, targets, flows, masks and cuts."""

    def __init__(self, frames: Sequence, style, vgg: VGG19, config: StyleConfig, video: VideoConfig,
                 flow: FlowSource, chunk: int, style_masks, slots: int):
        self.frames, self.config, self.video, self.flow, self.vgg = frames, config, video, flow, vgg
        self.count = len(frames)
        first = np.asarray(frames[0], np.float32)
        self.shape = first.shape[:2]
        self.style, self.style_masks = style, style_masks
        self.pair0 = prepare_pair(first, style, config, style_masks=style_masks, name="of frame 0")
        check_stage_sizes(*self.shape, [s.shape for s in self.pair0.styles], config, content_name="frame 0")
        longest = max(config.iterations, video.first_steps(config.iterations), 1)
        self.program = Program(Objective.build(config, vgg), config.optimizer, config.learning_rate,
                               config.lbfgs_memory, chunk=int(max(1, min(chunk, longest))))
        self.params = self.program.objective.params(vgg)
        self.slots = slots
        self.gram_cache: MutableMapping = {}
        self.steered: dict[str, float] = {}  # weights changed while the run runs (``steer``)
        self.callback = None
        self.steer = None
        self._cuts: dict[int, tuple[bool, float]] = {}

    def frame(self, i: int) -> jax.Array:
        return jnp.asarray(np.asarray(self.frames[i], np.float32))

    def weights(self, temporal: bool) -> dict:
        return {**loss_weights(self.config), **{k: jnp.float32(v) for k, v in self.steered.items()},
                "temporal_weight": jnp.float32(self.video.temporal_weight if temporal else 0.0)}

    def targets(self, i: int):
        """(pair, targets without the temporal part) of frame i. Under ``preserve_colors="histogram"``
        every frame keeps the style images as recoloured to frame 0: style targets that followed each
        frame's colours would flicker (and be computed again for every frame)."""
        pair = prepare_pair(self.frames[i], self.style, self.config, style_masks=self.style_masks,
                            name=f"of frame {i}")
        if self.config.preserve_colors == "histogram":
            pair = dataclasses.replace(pair, styles=self.pair0.styles)
        return pair, stage_targets(self.params, pair, self.program.objective, self.shape, 1.0, cache=self.gram_cache,
                                   vgg=self.vgg)

    def optimised(self, image: np.ndarray) -> jax.Array:
        """A stored output as the optimisation sees it (grey under ``preserve_colors="luminance"``)."""
        image = jnp.asarray(image, jnp.float32)
        if self.config.preserve_colors == "luminance":
            return color.grey(color.luminance(image))
        return image

    def finish(self, x: jax.Array, pair) -> np.ndarray:
        image = np.asarray(jnp.clip(x, 0.0, 1.0))
        if self.config.preserve_colors == "luminance":
            return color.finish(image, pair.original, "luminance")
        return image

    def neighbour(self, a: int, b: int, output: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """Frame b's output warped onto frame a, and the reliability weights of frame a."""
        return _neighbour(self.optimised(output), jnp.asarray(self.flow(a, b)), jnp.asarray(self.flow(b, a)))

    def cut(self, i: int) -> tuple[bool, float | None]:
        """(frame i starts a new shot, the share of its pixels matched to frame i - 1)."""
        if i == 0:
            return False, None
        if i not in self._cuts:
            share = float(matched_share(self.frame(i), self.frame(i - 1), jnp.asarray(self.flow(i, i - 1)),
                                        jnp.asarray(self.flow(i - 1, i))))
            self._cuts[i] = (share < self.video.cut_threshold, share)
        return self._cuts[i]

    def same_shot(self, a: int, b: int) -> bool:
        """No scene cut between frames a and b (both in range)."""
        if not (0 <= a < self.count and 0 <= b < self.count):
            return False
        return not any(self.cut(m)[0] for m in range(min(a, b) + 1, max(a, b) + 1))

    def temporal(self, neighbours: list[tuple[jax.Array, jax.Array]], closest_first: bool) -> dict:
        """The temporal targets of ``neighbours`` ((warped, weights) pairs, padded to the run's slots)."""
        h, w = self.shape
        warped = [n[0] for n in neighbours] + [jnp.zeros((h, w, 3), jnp.float32)] * (self.slots - len(neighbours))
        weights = [n[1] for n in neighbours] + [jnp.zeros((h, w), jnp.float32)] * (self.slots - len(neighbours))
        weights = jnp.stack(weights)
        return {"warped": jnp.stack(warped), "weights": long_term_weights(weights) if closest_first else weights}

    def optimise(self, x0: jax.Array, targets: dict, weights: dict, iterations: int, label: str = "",
                 pair=None):
        """One frame's run: (x, steps, weighted terms, status). After every chunk ``callback`` sees a
        :class:`~jaxstyle.engine.run.Progress` (``label``: the frame), and ``steer`` may change weights
        (for the rest of the run; the frame's optimizer starts afresh)."""
        params, program = self.params, self.program
        now = {"weights": weights}

        def on_chunk(done, st, last):
            if self.callback is not None:
                self.callback(label, Progress(done, iterations, float(last), jnp.copy(st.x),
                                              lambda image: self.finish(jnp.asarray(image), pair)))
            change = self.steer(done) if self.steer is not None and not bool(st.nonfinite) else None
            if change:
                check_steering(change)
                self.steered.update(change)
                now["weights"] = {**now["weights"], **{k: jnp.float32(v) for k, v in change.items()}}
                return restarted(st, init_state(params, resume_point(st), targets, now["weights"], program=program))
            return None

        outcome = run_stages(
            x0, [Stage(0, self.shape, iterations, 0, 1.0, True)], targets_at=lambda stage: targets,
            start_x=lambda x, stage: x,
            init=lambda x, targets: init_state(params, x, targets, now["weights"], program=program),
            advance=lambda st, targets, n: run_chunk(params, st, targets, now["weights"], n, program=program),
            evaluate=lambda x, targets: evaluate(params, x, targets, now["weights"], program=program),
            chunk=program.chunk, period=program.chunk,
            on_chunk=(lambda done, st, last, targets, stopped: on_chunk(done, st, last))
            if self.callback is not None or self.steer is not None else None)
        status = "nonfinite" if outcome.stopped[0] else "done"
        return outcome.images[0], len(outcome.histories[0]), outcome.terms[0], status


def stylize_video(frames: Sequence, style, *, vgg: VGG19, flow: FlowSource, config: StyleConfig = StyleConfig(),
                  video: VideoConfig = VideoConfig(), store: FrameStore | None = None,
                  on_frame: Callable[[FrameRecord, np.ndarray | None], None] | None = None,
                  style_masks=None, chunk: int = 50, mesh: jax.sharding.Mesh | None = None,
                  group: int | None = None, assign: Callable[[int], bool] = lambda i: True,
                  barrier: Callable[[int], None] = lambda pass_index: None,
                  callback: Callable[[str, object], None] | None = None,
                  steer: Callable[[int], dict | None] | None = None) -> VideoResult:
    """Stylize the video ``frames`` (a sequence of float32 [H, W, 3] RGB in [0, 1], one shape;
    indexed lazily) in ``style`` (one image or a list, as for :func:`jaxstyle.stylize`).

    flow: the optical flow between input frames by index (:func:`memoized_flows` adapts a
      frame-pair function such as :class:`jaxstyle.flow.DISFlow`). config: the per-frame
      objective and optimizer (``iterations``: each later frame's steps, or each pass's).
    video: the temporal options (:class:`~jaxstyle.config.VideoConfig`). store: where frames go
      (default in memory); frames already in it are not recomputed (resume).
    on_frame(record, image): after every frame (image None for a resumed one).
    chunk: steps per compiled chunk. Parallel mode: ``mesh`` (a one-axis mesh over the
      devices; None: one device), ``group`` frames per compiled batch (default one per device), ``assign(i)``
      whether this process computes frame i, ``barrier(pass)`` after each pass (multi-host runs).
    callback(label, progress): after every chunk of a frame's steps (sequential modes), as
      :func:`jaxstyle.stylize`'s. steer(step): new values of the content, style or TV weight for the
      rest of the run (taken between chunks, and between the groups of the parallel mode).
    """
    if len(frames) == 0:
        raise ValueError("expected at least one frame, got none")
    if config.scales:
        raise ValueError("a video runs at one scale: coarse-to-fine scales are for still images")
    if video.mode == "parallel":
        slots = 2
    elif video.passes > 1:
        slots = 1
    else:
        slots = len(video.relative_frames)
    run = _Run(frames, style, vgg, config, video, flow, chunk, style_masks, slots)
    run.callback, run.steer = callback, steer
    store = MemoryStore() if store is None else store
    on_frame = on_frame or (lambda record, image: None)
    start = time.perf_counter()
    if video.mode == "parallel":
        records = _parallel(run, store, on_frame, mesh, group, assign, barrier)
    else:
        records = _sequential(run, store, on_frame)
    cuts = [i for i in range(1, run.count) if run.cut(i)[0]] if video.cut_threshold > 0 else []
    return VideoResult(records=records, cuts=cuts, passes=video.passes, seconds=time.perf_counter() - start,
                       store=store)


def _resumed(store, on_frame, records, pass_index: int, i: int) -> bool:
    if store.get(pass_index, i) is None:
        return False
    record = FrameRecord(i, pass_index, "resumed", 0, 0, 0.0, {}, None, "done")
    records.append(record)
    on_frame(record, None)
    return True


def _sequential(run: _Run, store: FrameStore, on_frame) -> list[FrameRecord]:
    config, video = run.config, run.video
    records: list[FrameRecord] = []
    for p in range(video.passes):
        forward = p % 2 == 0
        temporal_on = p + 1 >= video.temporal_from_pass and video.temporal_weight > 0
        for i in (range(run.count) if forward else range(run.count - 1, -1, -1)):
            if _resumed(store, on_frame, records, p, i):
                continue
            begin = time.perf_counter()
            pair, targets = run.targets(i)
            content = jnp.asarray(pair.content)
            cut, matched = run.cut(i)
            neighbours: list = []
            if p == 0 and (i == 0 or cut):
                how, iterations = ("cut" if cut else "content"), video.first_steps(config.iterations)
                x0 = initial_image(content, config)
            elif p == 0:
                how, iterations = "warped", config.iterations
                warped, weights = run.neighbour(i, i - 1, store.get(p, i - 1))
                x0 = warped_start(content, warped, weights)
                if temporal_on:
                    if video.passes == 1:  # short- and long-term terms over the earlier frames of this shot
                        neighbours = [run.neighbour(i, i - j, store.get(p, i - j)) if run.same_shot(i, i - j)
                                      else None for j in video.relative_frames]
                        neighbours = [n if n is not None else (jnp.zeros_like(x0), jnp.zeros(run.shape))
                                      for n in neighbours]
                    else:
                        neighbours = [(warped, weights)]
            else:
                how, iterations = "blend", config.iterations
                current = run.optimised(store.get(p - 1, i))
                k = i - 1 if forward else i + 1
                x0 = current
                if run.same_shot(i, k):
                    warped, weights = run.neighbour(i, k, store.get(p, k))
                    x0 = pass_start(current, warped, weights, video.blend)
                    if temporal_on:
                        neighbours = [(warped, weights)]
            targets = {**targets, "temporal": run.temporal(neighbours, closest_first=video.passes == 1)}
            x, steps, terms, status = run.optimise(x0, targets, run.weights(bool(neighbours)), iterations,
                                                   label=f"pass {p + 1} frame {i}", pair=pair)
            image = run.finish(x, pair)
            record = FrameRecord(i, p, how, iterations, steps, time.perf_counter() - begin, terms, matched, status)
            store.put(p, i, image, record)
            records.append(record)
            on_frame(record, image)
    return records


def _parallel(run: _Run, store: FrameStore, on_frame, mesh, group, assign, barrier) -> list[FrameRecord]:
    config, video = run.config, run.video
    devices = 1 if mesh is None else mesh.devices.size
    group = devices if group is None else max(1, int(group))
    group = -(-group // devices) * devices  # whole rows of devices
    params = run.params if mesh is None else replicate(run.params, mesh)
    place = (lambda tree: tree) if mesh is None else (lambda tree: shard_batch(tree, mesh))
    strength = jnp.float32(video.blend / max(1e-6, 1.0 - video.blend))
    records: list[FrameRecord] = []
    for p in range(video.passes):
        temporal_on = p > 0 and p + 1 >= video.temporal_from_pass and video.temporal_weight > 0
        iterations = video.first_steps(config.iterations) if p == 0 else config.iterations
        todo = [i for i in range(run.count) if assign(i) and not _resumed(store, on_frame, records, p, i)]
        for first in range(0, len(todo), group):
            members = todo[first: first + group]
            begin = time.perf_counter()
            pairs, xs, all_targets, hows = [], [], [], []
            for i in members:
                pair, targets = run.targets(i)
                content = jnp.asarray(pair.content)
                neighbours = []
                if p == 0:
                    x0, how = initial_image(content, config), "content"
                else:
                    current = run.optimised(store.get(p - 1, i))
                    neighbours = [run.neighbour(i, k, store.get(p - 1, k)) for k in (i - 1, i + 1)
                                  if run.same_shot(i, k)]
                    x0, how = current, "blend"
                    if neighbours:
                        x0 = _normalised_blend(current, jnp.stack([n[0] for n in neighbours]),
                                               jnp.stack([n[1] for n in neighbours]), strength)
                    if not temporal_on:
                        neighbours = []
                targets = {**targets, "temporal": run.temporal(neighbours, closest_first=False)}
                pairs.append(pair), xs.append(x0), all_targets.append(targets), hows.append(how)
            change = run.steer(p) if run.steer is not None else None
            if change:
                check_steering(change)
                run.steered.update(change)
            weights = [run.weights(temporal_on) for _ in members]
            stack = lambda trees: pad_batch(jax.tree.map(lambda *t: jnp.stack(t), *trees), group)  # noqa: E731
            x0, targets, weights = place(stack(xs)), place(stack(all_targets)), place(stack(weights))
            sharded = mesh is not None
            outcome = run_stages(
                x0, [Stage(0, run.shape, iterations, 0, 1.0, True)],
                targets_at=lambda stage, targets=targets: targets, start_x=lambda x, stage: x,
                init=lambda x, targets, weights=weights, sharded=sharded: batched_start(
                    params, x, targets, weights, run.program, sharded),
                advance=lambda st, targets, n, weights=weights, sharded=sharded: batched_advance(
                    params, st, targets, weights, n, run.program, sharded),
                evaluate=lambda x, targets, weights=weights: batched_evaluate(params, x, targets, weights,
                                                                              run.program),
                chunk=run.program.chunk, period=run.program.chunk, members=len(members))
            seconds = (time.perf_counter() - begin) / len(members)
            finished = []
            for m, i in enumerate(members):  # all stored before any callback, which may interrupt
                image = run.finish(jnp.asarray(outcome.images[m]), pairs[m])
                record = FrameRecord(i, p, hows[m], iterations, len(outcome.histories[m]), seconds, outcome.terms[m],
                                     run.cut(i)[1], "nonfinite" if outcome.stopped[m] else "done")
                store.put(p, i, image, record)
                records.append(record)
                finished.append((record, image))
            for record, image in finished:
                on_frame(record, image)
        barrier(p)
    return records
