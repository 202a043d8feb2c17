"""Running compiled programs: training data, optimizers, the training loop, parameter files,
calling generated functions by name, atomic output files."""
