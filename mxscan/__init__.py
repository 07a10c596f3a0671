"""The composition root: the ``mxscan`` command wires probes into the engine."""

__version__ = "0.1.0"
