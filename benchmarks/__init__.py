"""Benchmarks, one module each with a ``main()``; ``python -m benchmarks`` runs them all."""
