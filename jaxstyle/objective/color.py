"""Colour preservation of Gatys, Bethge, Hertzmann & Shechtman (2016),
"Preserving Color in Neural Artistic Style Transfer".

Two pure NumPy transforms of RGB float [H, W, 3] images in [0, 1], applied to the
inputs before optimising (and, for luminance, to the output after):

* ``histogram``: the style image's colours are mapped so that their mean and
  covariance equal the content's, ``x' = C_c^{1/2} C_s^{-1/2} (x - mu_s) + mu_c``
  with symmetric (eigendecomposition) matrix square roots. Style transfer then
  runs as usual with the recoloured style.
* ``luminance``: transfer runs on luminance only. Content and style become grey
  images (Y of YIQ, repeated over RGB), the style's luminance matched to the
  content's mean and standard deviation; the result's Y is then recombined with
  the content's I and Q chroma channels.
"""

from __future__ import annotations

import numpy as np

MODES = ("luminance", "histogram")

# NTSC YIQ (the paper's choice of a luminance/chroma space).
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)
_EPS = 1e-5


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] RGB -> [H, W, 3] YIQ (float64)."""
    return np.asarray(image, np.float64) @ RGB_TO_YIQ.T


def yiq_to_rgb(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] YIQ -> [H, W, 3] RGB (float64, not clipped)."""
    return np.asarray(image, np.float64) @ YIQ_TO_RGB.T


def luminance(image: np.ndarray) -> np.ndarray:
    """Y of an RGB image [H, W, 3] -> [H, W] (float64)."""
    return np.asarray(image, np.float64) @ RGB_TO_YIQ[0]


def grey(y: np.ndarray) -> np.ndarray:
    """A luminance map [H, W] as a grey RGB float32 image [H, W, 3] in [0, 1]."""
    return np.repeat(np.clip(y, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)


def match_luminance(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style's luminance [H, W], shifted and scaled to the content's mean and std."""
    ys, yc = luminance(style), luminance(content)
    return (ys - ys.mean()) * (yc.std() / max(ys.std(), _EPS)) + yc.mean()


def recombine_luminance(styled: np.ndarray, content: np.ndarray) -> np.ndarray:
    """RGB float32 [H, W, 3] in [0, 1]: the luminance of ``styled`` with the chroma (I, Q) of ``content``."""
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = luminance(styled)
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0).astype(np.float32)


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric square root (or inverse square root) of a symmetric PSD 3x3 matrix."""
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, _EPS)
    return (vectors * (values ** (-0.5 if inverse else 0.5))) @ vectors.T


def match_color_statistics(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style image recoloured so its pixel mean and covariance equal the content's.

    Returns float64 [H, W, 3], not clipped (clip before use; clipping moves the statistics
    only where the map leaves [0, 1])."""
    s = np.asarray(style, np.float64).reshape(-1, 3)
    c = np.asarray(content, np.float64).reshape(-1, 3)
    mu_s, mu_c = s.mean(0), c.mean(0)
    cov_s = np.cov(s, rowvar=False, bias=True) + _EPS * np.eye(3)
    cov_c = np.cov(c, rowvar=False, bias=True) + _EPS * np.eye(3)
    transform = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    return ((s - mu_s) @ transform.T + mu_c).reshape(np.shape(style))


def prepare(content: np.ndarray, styles: list[np.ndarray], mode: str | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(content, styles) as the optimisation should see them under colour mode ``mode``."""
    if mode is None:
        return content, styles
    if mode == "histogram":
        return content, [np.clip(match_color_statistics(s, content), 0.0, 1.0).astype(np.float32) for s in styles]
    if mode == "luminance":
        return grey(luminance(content)), [grey(match_luminance(s, content)) for s in styles]
    raise ValueError(f"expected preserve_colors in {MODES} or None, got {mode!r}")


def finish(image: np.ndarray, content: np.ndarray, mode: str | None) -> np.ndarray:
    """The output image under colour mode ``mode`` (luminance: recombined with the content's chroma)."""
    return recombine_luminance(image, content) if mode == "luminance" else image
