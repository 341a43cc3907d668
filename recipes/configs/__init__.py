"""Recipe config modules, named dataset_network_scale as in arcface_torch."""
