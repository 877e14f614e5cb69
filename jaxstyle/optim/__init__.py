"""Optimizers of the image: the Optimizer protocol and the compiled step loop, our L-BFGS,
optax and jaxopt adapters, user factories."""
