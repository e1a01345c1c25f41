"""Data ablations: curate several recipes, train the same model on each, compare (``curate ablate``)."""
