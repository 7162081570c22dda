"""The host side of remote profiling: reach a device's `compofa agent` through the user's own ``ssh``."""
