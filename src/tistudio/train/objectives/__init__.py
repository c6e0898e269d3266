"""Training objectives: each turns a prepared batch into per-sample losses over its own trainable
embeddings. The loop (train/loop.py) is shared by all of them."""
