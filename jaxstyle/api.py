"""The Python entry points: the engine's runs with the cached VGG-19 when no network is given.

``jaxstyle.stylize``, ``jaxstyle.stylize_batch``, ``jaxstyle.style_problem`` and
``jaxstyle.stylize_video`` are the engine's functions (:mod:`jaxstyle.engine`) with one
convenience: ``vgg=None`` loads the cached weights
(:func:`jaxstyle.load_vgg19`, which says how to fetch them when there are none). The engine itself
never reads a file.
"""

from __future__ import annotations

import functools

from jaxstyle.engine import batch, problem, video
from jaxstyle.engine import stylize as single
from jaxstyle.flow import DISFlow
from jaxstyle.weights.fetch import load_vgg19


def _with_default_network(run):
    @functools.wraps(run)
    def wrapped(*args, vgg=None, **options):
        return run(*args, vgg=load_vgg19() if vgg is None else vgg, **options)

    return wrapped


stylize = _with_default_network(single.stylize)
stylize_batch = _with_default_network(batch.stylize_batch)
style_problem = _with_default_network(problem.style_problem)


def stylize_video(frames, style, *, vgg=None, flow=None, **options) -> video.VideoResult:
    """:func:`jaxstyle.engine.video.stylize_video` of in-memory ``frames`` (float32 [H, W, 3] in
    [0, 1]); ``flow=None`` computes the optical flow between them with OpenCV's DIS (needs
    ``jaxstyle[video]``), else ``flow(a, b)`` gives the flow from frame a to frame b. The output
    frames: ``result.frames(len(frames))``. Files in and out: :func:`jaxstyle.jobs.video.run_video`."""
    frames = list(frames)
    if flow is None:
        flow = video.memoized_flows(frames, DISFlow())
    return video.stylize_video(frames, style, vgg=load_vgg19() if vgg is None else vgg, flow=flow, **options)
