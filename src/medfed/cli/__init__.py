"""The ``medfed`` command line."""
