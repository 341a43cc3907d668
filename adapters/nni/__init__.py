"""NNI bridges: model spaces, strategies, nnictl tuners and trials, experiment launching and results."""
