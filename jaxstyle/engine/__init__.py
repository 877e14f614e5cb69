"""The engine: a run's static program, evaluation strategies, the compiled chunk loop and its
host driver (stages, progress, non-finite stops), for one image and vmapped for a batch;
sharding and memory planning."""
