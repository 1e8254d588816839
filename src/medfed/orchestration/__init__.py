"""The one round loop, site-side training, checkpoints and metrics, shared by simulation and
deployment."""
