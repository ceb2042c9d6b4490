"""Resources with a local default and a cloud implementation, picked once per environment.

    local (default)  LocalStore (a folder), LocalTrainer (TRL + PEFT), LocalGenerator (transformers +
                     PEFT), LocalHub folder
    gcp              GcsStore (gs://), VertexTrainer (Vertex AI PEFT tuning), VertexEndpoint (online
                     prediction; local generation for pairs without a Vertex model), HfHub (token from HF_TOKEN);
                     both Vertex resources get the settings' region, API endpoint and credentials
                     (COURSEGPT_VERTEX_LOCATION, COURSEGPT_VERTEX_API_ENDPOINT, COURSEGPT_GCP_CREDENTIALS)
The store follows COURSEGPT_STORE in either environment (`store_for`: gs:// is GcsStore).
COURSEGPT_INFERENCE_URL (either environment) evaluates through an OpenAI-compatible server instead
(vLLM with --lora-modules, Ollama), its key from COURSEGPT_INFERENCE_API_KEY when set.

Secrets only ever come from dg.EnvVar, resolved at run launch, never at import.
"""

from __future__ import annotations

import os

import dagster as dg

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.core.settings import Settings, require_named_sources
from resources.gcs_store import GcsStore
from resources.hub import HfHub, LocalHub
from resources.inference import LocalGenerator
from resources.local_store import LocalStore
from resources.openai_compatible import OpenAICompatibleServer
from resources.storage import ArtifactStore
from resources.tuning import LocalTrainer, VertexTrainer
from resources.vertex_endpoint import VertexEndpoint
from resources.vertex_tuning import VertexTuning


def _server(settings: Settings) -> OpenAICompatibleServer:
    return OpenAICompatibleServer(base_url=settings.inference_url, api_key=_env("COURSEGPT_INFERENCE_API_KEY"))


def _env(name: str) -> dg.EnvVar | None:
    """The variable, resolved at run launch, when it is set; else None, so the resource that needs it
    raises its own message at the moment it is needed (a missing HF_TOKEN stops publishing, not every run)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def store_for(root: str, **options) -> ArtifactStore:
    """GcsStore for `gs://bucket/prefix`, else LocalStore; `options` are the backend's other fields."""
    backend = GcsStore if root.startswith("gs://") else LocalStore
    return backend(root=root, **options)


def resources_for(settings: Settings) -> dict:
    if settings.is_gcp:
        plan = default_plan()
        require_named_sources([get_agent(agent, plan).source_variable for agent in plan.agent_names])
        project = _env("GOOGLE_CLOUD_PROJECT")
        vertex = {"location": settings.vertex_location, "api_endpoint": settings.vertex_api_endpoint,
                  "credentials": settings.gcp_credentials}
        return {
            "store": store_for(settings.store, gcs_project=project),
            "trainer": VertexTrainer(vertex=VertexTuning(project=project, **vertex)),
            "inference": _server(settings) if settings.inference_url else VertexEndpoint(project=project, **vertex),
            "hub": HfHub(token=_env("HF_TOKEN"), private=os.environ.get("COURSEGPT_HUB_PRIVATE", "1") != "0",
                         dry_run=os.environ.get("COURSEGPT_HUB_DRY_RUN", "0") == "1"),
        }
    return {
        "store": store_for(settings.store),
        "trainer": LocalTrainer(),
        "inference": _server(settings) if settings.inference_url else LocalGenerator(),
        "hub": LocalHub(),
    }
