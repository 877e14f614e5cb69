"""jaxstyle: neural style transfer (Gatys et al.) in JAX. Public API re-exports only."""

from jaxstyle.batch import stylize_batch
from jaxstyle.config import StyleConfig
from jaxstyle.fetch import fetch_weights, load_vgg19
from jaxstyle.image_io import load_image, save_image
from jaxstyle.optimize import Optimizer
from jaxstyle.problem import StyleProblem, style_problem
from jaxstyle.stylize import Progress, StyleResult, stylize
from jaxstyle.vgg import LAYER_NAMES, VGG19, VGG19Features
from jaxstyle.weights import VGGWeights, read_weights

__all__ = ["LAYER_NAMES", "VGG19", "VGG19Features", "VGGWeights", "Optimizer", "Progress", "StyleConfig",
           "StyleProblem", "StyleResult", "fetch_weights", "load_image", "load_vgg19", "read_weights", "save_image",
           "style_problem", "stylize", "stylize_batch"]
__version__ = "0.1.0"
