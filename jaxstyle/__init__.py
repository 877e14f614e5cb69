"""jaxstyle: neural style transfer (Gatys et al.) in JAX. Public API re-exports only."""

from jaxstyle.api import style_problem, stylize, stylize_batch, stylize_video
from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.engine.batch import BatchProgress
from jaxstyle.engine.problem import StyleProblem
from jaxstyle.engine.run import Progress, StyleResult
from jaxstyle.io.images import load_image, save_image
from jaxstyle.jobs.feedforward_model import FeedForwardModel, load_model
from jaxstyle.jobs.train import TrainProgress, TrainResult, train
from jaxstyle.model.vgg import LAYER_NAMES, VGG19, VGG19Features
from jaxstyle.optim import Optimizer
from jaxstyle.weights.fetch import fetch_weights, load_vgg19
from jaxstyle.weights.formats import VGGWeights, read_weights

__all__ = ["BatchProgress", "FeedForwardModel", "LAYER_NAMES", "VGG19", "VGG19Features", "VGGWeights", "Optimizer",
           "Progress", "StyleConfig", "StyleProblem", "StyleResult", "fetch_weights", "load_image", "load_model",
           "load_vgg19", "read_weights", "save_image", "style_problem", "stylize", "stylize_batch", "stylize_video",
           "TrainProgress", "TrainResult", "train", "VideoConfig"]
__version__ = "0.1.0"
