"""Hub: where a reviewed adapter is published. LocalHub (default) writes a folder laid out exactly as the
Hugging Face model repository would be; HfHub creates the repository and uploads that folder with HfApi.

Both publish a staged folder (`stage_repo`): README.md (the model card), the PEFT adapter files and the
tokenizer files. Staging rewrites the local base-model path that PEFT records in adapter_config.json to
the base model's Hub id and refuses any text file that still holds a token or a local path, so nothing
machine-specific leaves the machine. The HF token only ever comes from `dg.EnvVar("HF_TOKEN")`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from pydantic import Field

from coursegpt_assets.core import settings
from coursegpt_assets.core.layout import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CHAT_TEMPLATE_FILE, LOSS_CURVE_FILE
from coursegpt_assets.core.names import split_pair
from coursegpt_assets.core.secrets_scan import find_secrets

REPO_SUFFIX = "-peft"
CARD_FILE = "README.md"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", CHAT_TEMPLATE_FILE, "special_tokens_map.json",
    "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt",
)
EXTRA_FILES = (LOSS_CURVE_FILE,)
# Files a person or a tool writes settings into, scanned for tokens and local paths before publishing.
# Vocabulary files (tokenizer.json, vocab.json, merges.txt) are data: their tokens ("/home", "hf_") are not leaks.
SCANNED_FILES = (CARD_FILE, ADAPTER_CONFIG, "tokenizer_config.json", "special_tokens_map.json",
                 "added_tokens.json", CHAT_TEMPLATE_FILE)
# JSON fields in which transformers/PEFT record where a model was loaded from (often a local folder).
PATH_FIELDS = ("base_model_name_or_path", "name_or_path", "_name_or_path")
DROP_FIELDS = ("tokenizer_file",)
DEFAULT_ENDPOINT = "https://huggingface.co"
#: remote files HfHub deletes unless the commit uploads them again: all of them (fnmatch: `*` spans `/`)
STALE_FILES = "*"


class HubError(RuntimeError):
    """Publishing failed or would leak something; the message names the repo, file or variable."""


def repo_id_for(org: str, pair: str) -> str:
    """`<org>/<agent>-<base_model>-peft`, the repository one pair's adapter is published to."""
    agent, base_model = split_pair(pair)
    if not org or "/" in org:
        raise HubError(f"{org!r} is not a Hub organisation or user name")
    return f"{org}/{agent}-{base_model}{REPO_SUFFIX}"


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    files: tuple[str, ...]
    location: str  # the repository URL, or the local folder for LocalHub
    uploaded: bool  # False for a dry run
    dry_run: bool = False
    private: bool | None = None
    commit: str | None = None
    bytes_total: int = field(default=0)


def repo_files(folder: Path) -> list[str]:
    """Every file of a staged repository folder, as repository paths, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _clean_json(path: Path, base_model_id: str) -> None:
    """Point recorded load paths at the Hub base model instead of a folder on this machine."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return
    changed = False
    for key in PATH_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and (key == "base_model_name_or_path" or find_secrets(value)):
            changed |= value != base_model_id
            data[key] = base_model_id
    for key in DROP_FIELDS:
        if key in data:
            data.pop(key)
            changed = True
    if changed:
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def stage_repo(adapter_dir: Path, card_text: str, dest: Path, base_model_id: str) -> list[str]:
    """Lay out `dest` as the HF repository: README.md, adapter and tokenizer files (+ loss curve)."""
    adapter_dir, dest = Path(adapter_dir), Path(dest)
    missing = [name for name in ADAPTER_FILES if not (adapter_dir / name).is_file()]
    if missing:
        raise HubError(f"{adapter_dir}: adapter folder lacks {missing} (materialise the adapter asset first)")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / CARD_FILE).write_text(card_text, encoding="utf-8")
    for name in (*ADAPTER_FILES, *TOKENIZER_FILES, *EXTRA_FILES):
        if (adapter_dir / name).is_file():
            shutil.copyfile(adapter_dir / name, dest / name)
    if not any((dest / name).is_file() for name in TOKENIZER_FILES):
        raise HubError(f"{adapter_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...) beside the adapter")
    for name in (ADAPTER_CONFIG, "tokenizer_config.json"):
        if (dest / name).is_file():
            _clean_json(dest / name, base_model_id)
    leaks = [
        finding.describe(name)
        for name in repo_files(dest)
        if name in SCANNED_FILES
        for finding in find_secrets((dest / name).read_text(encoding="utf-8", errors="replace"))
    ]
    if leaks:
        raise HubError(f"refusing to publish {adapter_dir.name}: " + "; ".join(leaks))
    return repo_files(dest)


class Hub(dg.ConfigurableResource):
    """Where adapters are published. Subclasses: LocalHub (a folder) and HfHub (the Hugging Face Hub)."""

    organization: str | None = Field(
        default=None, description="Hub organisation or user; empty means the plan's hub_organization"
    )

    def repo_id(self, pair: str, default_org: str) -> str:
        return repo_id_for(self.organization or default_org, pair)

    def publish(self, folder: Path, repo_id: str, *, commit_message: str) -> PublishResult:
        raise NotImplementedError(f"{type(self).__name__} does not implement publish()")


class LocalHub(Hub):
    """Writes `<root>/<org>/<agent>-<base_model>-peft/` exactly as the Hub repository would hold it."""

    root: str | None = Field(default=None, description="Folder of published repos; default $COURSEGPT_HOME/hub")

    def root_path(self) -> Path:
        return Path(self.root) if self.root else settings.current().home / "hub"

    def publish(self, folder: Path, repo_id: str, *, commit_message: str) -> PublishResult:
        """Replace the repo folder by renames: readers see the old version or the new, never a mix.

        The folder holds exactly the repository's files; `commit_message` has nowhere to go locally."""
        dest = self.root_path() / repo_id
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            if dest.exists():
                os.rename(dest, old)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not dest.exists():
                os.rename(old, dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
        files = tuple(repo_files(dest))
        return PublishResult(repo_id, files, str(dest.resolve()), uploaded=True, bytes_total=_folder_bytes(folder))


class HfHub(Hub):
    """Creates the model repository and uploads the staged folder with `HfApi` (one commit), deleting the
    files of earlier versions that the staged folder no longer holds."""

    token: str | None = Field(default=None, description="HF write token; bind dg.EnvVar('HF_TOKEN'), never a literal")
    endpoint: str | None = Field(
        default=None, description="Hub endpoint (a mirror or a test server); empty means $HF_ENDPOINT or huggingface.co"
    )
    private: bool = Field(default=True, description="Create new repositories as private")
    dry_run: bool = Field(default=False, description="List what would be uploaded; contact nothing")

    def resolved_endpoint(self) -> str:
        return (self.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")

    def publish(self, folder: Path, repo_id: str, *, commit_message: str) -> PublishResult:
        folder = Path(folder)
        files = tuple(repo_files(folder))
        endpoint = self.resolved_endpoint()
        url = f"{endpoint}/{repo_id}"
        size = _folder_bytes(folder)
        if self.dry_run:
            return PublishResult(repo_id, files, url, uploaded=False, dry_run=True, private=self.private, bytes_total=size)
        if not self.token:
            raise HubError(
                f"publishing {repo_id} needs a Hugging Face write token: set the HF_TOKEN environment variable "
                "(HfHub(token=dg.EnvVar('HF_TOKEN'))), or use LocalHub / HfHub(dry_run=True)"
            )
        from huggingface_hub import HfApi, constants
        from huggingface_hub.errors import HfHubHTTPError

        if constants.is_offline_mode():
            raise HubError(f"publishing {repo_id}: HF_HUB_OFFLINE is set; unset it to reach {endpoint}")
        api = HfApi(endpoint=endpoint, token=self.token, library_name="coursegpt-forge")
        try:
            repo_url = api.create_repo(repo_id, repo_type="model", private=self.private, exist_ok=True)
            # one commit that also deletes every remote file the staged folder no longer has (an earlier
            # version's files), as LocalHub replaces its folder whole; the Hub keeps .gitattributes
            info = api.upload_folder(
                repo_id=repo_id, repo_type="model", folder_path=folder, commit_message=commit_message,
                delete_patterns=STALE_FILES,
            )
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else "?"
            raise HubError(f"publishing {repo_id} to {endpoint} failed (HTTP {status}): {e}") from e
        return PublishResult(
            repo_id, files, str(repo_url), uploaded=True, private=self.private, commit=info.oid, bytes_total=size
        )
