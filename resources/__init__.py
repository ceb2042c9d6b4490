"""Resources with a local default and a cloud implementation, picked once per environment.

    local (default)  ArtifactStore on a folder, LocalTrainer (TRL + PEFT), LocalGenerator (transformers +
                     PEFT), LocalHub folder
    gcp              ArtifactStore on gs://, VertexTrainer (Vertex AI PEFT tuning), VertexEndpoint (online
                     prediction; local generation for pairs without a Vertex model), HfHub (token from HF_TOKEN)
COURSEGPT_INFERENCE_URL (either environment) evaluates through an OpenAI-compatible server instead
(vLLM with --lora-modules, Ollama), its key from COURSEGPT_INFERENCE_API_KEY when set.

Secrets only ever come from dg.EnvVar, resolved at run launch, never at import.
"""

from __future__ import annotations

import os

import dagster as dg

from coursegpt_assets.settings import Settings
from resources.hub import HfHub, LocalHub
from resources.inference import LocalGenerator, OpenAICompatibleServer, VertexEndpoint
from resources.storage import ArtifactStore
from resources.tuning import LocalTrainer, VertexTrainer
from resources.vertex_tuning import VertexTuning


def _server(settings: Settings) -> OpenAICompatibleServer:
    key = dg.EnvVar("COURSEGPT_INFERENCE_API_KEY") if os.environ.get("COURSEGPT_INFERENCE_API_KEY") else None
    return OpenAICompatibleServer(base_url=settings.inference_url, api_key=key)


def resources_for(settings: Settings) -> dict:
    if settings.is_gcp:
        project = dg.EnvVar("GOOGLE_CLOUD_PROJECT")
        return {
            "store": ArtifactStore(root=settings.store, gcs_project=project),
            "trainer": VertexTrainer(vertex=VertexTuning(project=project)),
            "inference": _server(settings) if settings.inference_url else VertexEndpoint(),
            "hub": HfHub(token=dg.EnvVar("HF_TOKEN"), private=True),
        }
    return {
        "store": ArtifactStore(root=settings.store),
        "trainer": LocalTrainer(),
        "inference": _server(settings) if settings.inference_url else LocalGenerator(),
        "hub": LocalHub(),
    }
