"""Run folders: every name a training run writes (folder.py), which run a folder belongs to
(identity.py) and the lock a training process holds on it (lock.py). Standard library and the
file formats (embeddings, hypernetworks) only, so the CLI listing and the web UI read runs without
loading torch models."""
