"""medfed: federated learning on multi-institutional medical imaging."""

__version__ = "0.1.0"
