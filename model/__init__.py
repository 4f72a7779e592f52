"""Features, datasets, the transformer diffusion model, baselines, training, evaluation,
the streaming runtime and hybrid fusion."""
