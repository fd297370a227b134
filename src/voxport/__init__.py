"""voxport: run speech foundation models on any PyTorch accelerator and prove the port."""

__version__ = "0.1.0"
