"""Resources with a local default and a cloud implementation, picked once per environment."""

from __future__ import annotations

from coursegpt_assets.settings import Settings
from resources.storage import ArtifactStore


def resources_for(settings: Settings) -> dict:
    """The resource mapping for `local` or `gcp`; secrets only ever come from dg.EnvVar."""
    store = ArtifactStore(root=settings.store)
    return {"store": store}
