"""IFU outlier detection: the difference method and the cube method."""
