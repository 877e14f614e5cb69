"""Jobs, files in and files out: one run, a batch (manifests, claims between concurrent runs,
multi-host), the plan of a run."""
