"""imusic: wearable facial capture with micro-IMUs (the command line and the pipelines)."""

__version__ = "0.1.0"
