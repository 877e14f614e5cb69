"""Readers and writers: images, object storage (fsspec), atomic local files, loss plots. The only
modules that touch files."""
