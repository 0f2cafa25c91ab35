"""Language-transferring neurons: streaming statistics, LAPE and contrast scores, ablation, user
hooks."""
