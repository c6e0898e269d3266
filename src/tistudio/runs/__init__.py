"""Run folders: every name a training run writes (folder.py), which run a folder belongs to
(identity.py) and the lock a training process holds on it (lock.py). Below train/ in the layers:
the CLI listing, the web UI and the benchmarks read runs through it without loading a model."""
