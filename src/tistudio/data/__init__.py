"""Training data: captions, prompt templates, image/weight-map loading, the latent cache and the
step -> batch plan. Never imports `tistudio.models`: the latent cache is handed an encode function."""
