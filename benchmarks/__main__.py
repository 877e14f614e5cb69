"""python -m benchmarks: the step-time benchmark (see benchmarks/README.md)."""

from benchmarks.step_time import main

main()
