"""Embedding file formats: one small module per layout, chosen by sniffing content (registry.py)."""
from .a1111_png import save_png_embedding
from .registry import FORMATS, convert, load_embedding, read_embedding, save_embedding

__all__ = ["load_embedding", "save_embedding", "read_embedding", "convert", "save_png_embedding", "FORMATS"]
