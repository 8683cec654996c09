"""Algorithm 1, resumable: config checks (checks), the device trainer (trainer), finished
phases on disk (phases), the recipe fields of config.train (train_options), and the study
itself (study)."""
