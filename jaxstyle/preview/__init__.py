"""A live page beside a run: the current image, the loss curves and controls (``--preview``)."""
