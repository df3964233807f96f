"""onecommit: one git commit drives a model through train, register, serve, switch and promote."""

__version__ = "0.1.0"
