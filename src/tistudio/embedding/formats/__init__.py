"""Embedding file formats: one small module per layout, chosen by sniffing content (registry.py)."""
from .registry import load_embedding, save_embedding, FORMATS

__all__ = ["load_embedding", "save_embedding", "FORMATS"]
