"""Machine and version facts recorded with every benchmark number."""

from __future__ import annotations

import datetime
import os
import platform


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    import flax
    import jax
    import jaxlib
    import optax

    device = jax.devices()[0]
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "platform": device.platform, "device_kind": device.device_kind, "device_count": jax.device_count(),
            "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__}
