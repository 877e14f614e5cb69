"""Multi-host runs through ``jax.distributed``: start-up, this process's place, a barrier.

Each process stylizes a disjoint share of the pairs on its own local devices (data
parallelism by manifest sharding; no cross-host traffic during the optimisation), then
all processes meet at a barrier so that process 0 can merge the reports.
"""

from __future__ import annotations

import jax


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """Join the run; returns (process index, process count).

    With no arguments JAX detects the cluster itself (SLURM, Open MPI, TPU pods, and
    the ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID`` variables).
    """
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return jax.process_index(), jax.process_count()


def barrier(name: str, timeout_seconds: float = 3600.0) -> None:
    """Wait until every process of the run reaches the barrier called ``name``."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the coordination client has no public barrier API yet

    distributed.global_state.client.wait_at_barrier(name, int(timeout_seconds * 1000))
