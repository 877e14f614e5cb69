"""The Python entry points: the engine's runs, taking images as notebook users have them, with the
cached VGG-19 when no network is given.

``jaxstyle.stylize``, ``jaxstyle.stylize_batch``, ``jaxstyle.style_problem`` and
``jaxstyle.stylize_video`` are the engine's functions (:mod:`jaxstyle.engine`) with two
conveniences: every image and mask may be a path, a PIL image, or a float (in [0, 1]), uint8 or
uint16 array, grey or with alpha (:func:`jaxstyle.io.images.as_image`: a path is read as the CLI
reads it, an array as the same pixels in a file would be), anything else a ValueError naming the
argument; and ``vgg=None`` loads the cached weights (:func:`jaxstyle.load_vgg19`, which says how
to fetch them when there are none). The engine itself never reads a file.
"""

from __future__ import annotations

import collections.abc
import functools

import numpy as np

from jaxstyle.engine import batch, problem, video
from jaxstyle.engine import stylize as single
from jaxstyle.engine.problem import StyleProblem
from jaxstyle.engine.run import StyleResult
from jaxstyle.flow import DISFlow
from jaxstyle.io.images import as_image, check_image_kind
from jaxstyle.weights.fetch import load_vgg19


def _network(vgg):
    return load_vgg19() if vgg is None else vgg


def _listed(values, what: str) -> list:
    """A list, a tuple or a stacked array ([N, ...]) as a list; ValueError for anything else."""
    if isinstance(values, (list, tuple)) or getattr(values, "ndim", 0) >= 3:
        return list(values)
    raise ValueError(f"expected {what} as a list, got {type(values).__name__}")


def _styles(style, of: str = ""):
    """One style image, or a list (or a stacked array [N, h, w, C]) of them, converted."""
    if not isinstance(style, (list, tuple)) and getattr(style, "ndim", 0) != 4:
        return as_image(style, f"the style image{of}")
    return [as_image(s, f"style image {i + 1}{of}") for i, s in enumerate(style)]


def _mask(mask, what: str):
    return None if mask is None else as_image(mask, what, mask=True)


def _style_masks(masks, of: str = ""):
    if masks is None:
        return None
    return [_mask(m, f"style mask {i + 1}{of}") for i, m in enumerate(_listed(masks, f"the style masks{of}"))]


def _pair(content, style, init_image, content_mask, style_masks) -> dict:
    return {"content": as_image(content, "the content image"), "style": _styles(style),
            "init_image": None if init_image is None else as_image(init_image, "the init image"),
            "content_mask": _mask(content_mask, "the content mask"), "style_masks": _style_masks(style_masks)}


def stylize(content, style, *, vgg=None, init_image=None, content_mask=None, style_masks=None,
            **options) -> StyleResult:
    """:func:`jaxstyle.engine.stylize.stylize` (see there for every option), the images and masks of
    any kind the module docstring lists."""
    pair = _pair(content, style, init_image, content_mask, style_masks)
    return single.stylize(pair.pop("content"), pair.pop("style"), vgg=_network(vgg), **pair, **options)


def style_problem(content, style, *, vgg=None, init_image=None, content_mask=None, style_masks=None,
                  **options) -> StyleProblem:
    """:func:`jaxstyle.engine.problem.style_problem`, the images and masks of any kind (as :func:`stylize`)."""
    pair = _pair(content, style, init_image, content_mask, style_masks)
    return problem.style_problem(pair.pop("content"), pair.pop("style"), vgg=_network(vgg), **pair, **options)


def stylize_batch(contents, styles, *, vgg=None, content_masks=None, style_masks=None,
                  **options) -> list[StyleResult]:
    """:func:`jaxstyle.engine.batch.stylize_batch`: ``contents`` a list of B images of one shape (or
    an array [B, H, W, C]), ``styles`` B style images or lists of them, masks per pair; each of any
    kind (as :func:`stylize`)."""
    images = [as_image(c, f"the content image of pair {i}") for i, c in enumerate(_listed(contents, "contents"))]
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise ValueError(f"expected contents of one shape (a batch runs one shape), got {shapes}")
    stacked = np.stack(images) if images else np.zeros((0, 1, 1, 3), np.float32)
    styles = [_styles(s, f" of pair {i}") for i, s in enumerate(_listed(styles, "styles"))]
    if content_masks is not None:
        content_masks = [_mask(m, f"the content mask of pair {i}")
                         for i, m in enumerate(_listed(content_masks, "content masks"))]
    if style_masks is not None:
        style_masks = [_style_masks(m, f" of pair {i}") for i, m in enumerate(_listed(style_masks, "style masks"))]
    return batch.stylize_batch(stacked, styles, vgg=_network(vgg), content_masks=content_masks,
                               style_masks=style_masks, **options)


class Frames(collections.abc.Sequence):
    """A caller's video frames, each converted (:func:`jaxstyle.io.images.as_image`) when the run
    takes it, the last few kept: a clip given as paths or uint8 arrays is never held as float32 all
    at once. Every frame's kind is checked up front (a path's header read), not hours into a run."""

    def __init__(self, frames, keep: int = 4):
        self._frames = list(frames)
        for i, frame in enumerate(self._frames):
            check_image_kind(frame, f"frame {i}")
        self._converted = functools.lru_cache(maxsize=keep)(lambda i: as_image(self._frames[i], f"frame {i}"))

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._converted(range(len(self))[index])  # IndexError out of range; negative from the end


def stylize_video(frames, style, *, vgg=None, flow=None, style_masks=None, **options) -> video.VideoResult:
    """:func:`jaxstyle.engine.video.stylize_video` of in-memory ``frames`` (images of any kind, as
    :func:`stylize`'s, one shape); ``flow=None`` computes the optical flow between them with
    OpenCV's DIS (needs ``jaxstyle[video]``), else ``flow(a, b)`` gives the flow from frame a to
    frame b. The output frames: ``result.frames(len(frames))``. Files in and out:
    :func:`jaxstyle.jobs.video.run_video`."""
    frames = Frames(frames)
    if flow is None:
        flow = video.memoized_flows(frames, DISFlow())
    return video.stylize_video(frames, _styles(style), vgg=_network(vgg), flow=flow,
                               style_masks=_style_masks(style_masks), **options)
