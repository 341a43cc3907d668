"""What a user runs: config modules (``configs/``) and NNI experiment files (``nni/``)."""
