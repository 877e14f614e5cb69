"""The Python entry points: the engine's runs with the cached VGG-19 when no network is given.

``jaxstyle.stylize``, ``jaxstyle.stylize_batch`` and ``jaxstyle.style_problem`` are the engine's
functions (:mod:`jaxstyle.engine`) with one convenience: ``vgg=None`` loads the cached weights
(:func:`jaxstyle.load_vgg19`, which says how to fetch them when there are none). The engine itself
never reads a file.
"""

from __future__ import annotations

import functools

from jaxstyle.engine import batch, problem
from jaxstyle.engine import stylize as single
from jaxstyle.weights.fetch import load_vgg19


def _with_default_network(run):
    @functools.wraps(run)
    def wrapped(*args, vgg=None, **options):
        return run(*args, vgg=load_vgg19() if vgg is None else vgg, **options)

    return wrapped


stylize = _with_default_network(single.stylize)
stylize_batch = _with_default_network(batch.stylize_batch)
style_problem = _with_default_network(problem.style_problem)
