"""Stage `tuning`: tuning_dataset per pair, and the blocking checks that gate (paid) training on it."""
