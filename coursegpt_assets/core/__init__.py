"""What every layer shares: the training plan, the environment settings, the store layout, the names of
tags and files, chat templates, the token estimate and the secret scan. Imports no Dagster."""
