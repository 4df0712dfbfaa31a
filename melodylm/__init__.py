"""melodylm: token-based language modelling of melodies."""

__version__ = "0.1.0"
