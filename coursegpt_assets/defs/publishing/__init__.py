"""Stage `publishing`: model_card per pair, its blocking check, and published_adapter."""
