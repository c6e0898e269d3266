"""Hypernetworks in AUTOMATIC1111's format: small residual MLPs applied to the context before an
attention layer's key and value projections (docs/hypernetworks.md).

model.py   the structure (layer structure, activation, layer norm, dropout, init) and creation
format.py  the `.pt` dict A1111 and ComfyUI read, its `.optim` side file, what each client accepts
apply.py   putting one or several on a diffusers UNet for a while, and `<hypernet:name:mult>` tags
"""
