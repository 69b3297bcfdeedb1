"""daskod.datasets."""
