"""Resources with a local default and a cloud implementation, picked once per environment.

    local (default)  ArtifactStore on a folder, LocalTrainer (TRL + PEFT), LocalHub folder
    gcp              ArtifactStore on gs://, VertexTrainer (Vertex AI PEFT tuning), HfHub (token from HF_TOKEN)

Secrets only ever come from dg.EnvVar, resolved at run launch, never at import.
"""

from __future__ import annotations

import dagster as dg

from coursegpt_assets.settings import Settings
from resources.hub import HfHub, LocalHub
from resources.storage import ArtifactStore
from resources.tuning import LocalTrainer, VertexTrainer
from resources.vertex_tuning import VertexTuning


def resources_for(settings: Settings) -> dict:
    if settings.is_gcp:
        project = dg.EnvVar("GOOGLE_CLOUD_PROJECT")
        return {
            "store": ArtifactStore(root=settings.store, gcs_project=project),
            "trainer": VertexTrainer(vertex=VertexTuning(project=project)),
            "hub": HfHub(token=dg.EnvVar("HF_TOKEN"), private=True),
        }
    return {
        "store": ArtifactStore(root=settings.store),
        "trainer": LocalTrainer(),
        "hub": LocalHub(),
    }
