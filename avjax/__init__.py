"""avjax: audio-visual self-supervised learning in JAX/Flax."""
__version__ = "0.1.0"
