"""Stage `adapters`: tuning_job (train locally or submit to Vertex AI) and adapter (validated, published as latest)."""
