"""TI Studio: Textual Inversion and DreamArtist embeddings for Stable Diffusion 1.x, 2.x and XL."""
__version__ = "0.1.0"
