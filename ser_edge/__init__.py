"""ser-edge: speech emotion recognition from training to a Raspberry Pi."""

__version__ = "0.1.0"
