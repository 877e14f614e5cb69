"""VGG-19 weights: the file formats (Keras h5, the legacy torch pickle read without torch, state
dicts, our converted npz), the restricted unpickler, and fetch + checksum + cache."""
