"""Stage `data`: raw_examples → clean_examples → dataset_splits, per agent."""
