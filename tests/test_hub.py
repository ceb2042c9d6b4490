"""Hub resources: staging the repository folder, LocalHub layout, HfHub against a loopback Hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from coursegpt_assets.core import layout
from coursegpt_assets.core.plan import default_plan
from resources.hub import HfHub, HubError, LocalHub, repo_id_for, stage_repo
from resources.local_store import LocalStore
from resources.storage import ArtifactStore
from tests.fakes.hub_server import FakeHub
from tests.fakes.publish_artifacts import ADAPTER_VERSION, adapter_file, write_upstream

PAIR = "router__llama31-8b"  # a real base model: smoke pairs are never published
ORG = "coursegpt-test-org"
REPO = f"{ORG}/router-llama31-8b-peft"
BASE_ID = default_plan().base_model_for(PAIR).hf_id
TOKEN = "hf_" + "Zb3Lq9Xw2Rt7Yp5Mn1Kc8Vd4Hs6Fj0GaUe"
CARD = "---\nlicense: llama3.1\nlibrary_name: peft\n---\n\n# router-llama31-8b-peft\n"
REPO_FILES = ["README.md", "adapter_config.json", "adapter_model.safetensors", "chat_template.jinja",
              "loss_curve.png", "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    s = LocalStore(root=str(tmp_path / "store"))
    write_upstream(s, PAIR, base_dir=str(tmp_path / "base" / "llama31-8b"))
    return s


@pytest.fixture
def staged(store, tmp_path) -> Path:
    adapter = Path(store.uri(layout.adapter_dir(PAIR, ADAPTER_VERSION)))
    stage_repo(adapter, CARD, tmp_path / "staged", default_plan().base_model_for(PAIR).hf_id)
    return tmp_path / "staged"


@pytest.fixture
def online(monkeypatch):
    """The loopback Hub is not the internet: let HfApi reach it even when HF_HUB_OFFLINE is set."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


def test_repo_id_names_agent_and_base_model():
    assert repo_id_for(ORG, PAIR) == REPO
    assert repo_id_for("CourseGPT-Pro-DSAI-Lab-Group-6", "math__qwen3-32b") == "CourseGPT-Pro-DSAI-Lab-Group-6/math-qwen3-32b-peft"
    with pytest.raises(HubError, match="not a Hub organisation"):
        repo_id_for("a/b", PAIR)
    assert LocalHub(organization="other").repo_id(PAIR, ORG) == "other/router-llama31-8b-peft"
    assert LocalHub().repo_id(PAIR, ORG) == REPO


def test_staged_repo_holds_card_adapter_and_tokenizer_without_local_paths(store, staged, tmp_path):
    assert sorted(p.name for p in staged.iterdir()) == REPO_FILES  # no training_summary.json
    assert (staged / "README.md").read_text() == CARD
    assert (staged / "adapter_model.safetensors").read_bytes() == adapter_file(store, PAIR, "adapter_model.safetensors")
    config = json.loads((staged / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE_ID
    assert config["r"] == 16 and config["peft_type"] == "LORA"
    tok_config = json.loads((staged / "tokenizer_config.json").read_text())
    assert tok_config["name_or_path"] == BASE_ID and tok_config["eos_token"] == "<|eos|>"
    assert str(tmp_path) not in "".join(p.read_text(errors="replace") for p in staged.iterdir())


def test_staging_refuses_missing_adapter_and_leaking_files(store, tmp_path):
    adapter = Path(store.uri(layout.adapter_dir(PAIR, ADAPTER_VERSION)))
    (adapter / "chat_template.jinja").write_text(f"{{# pushed with {TOKEN} #}}{{{{ messages }}}}")
    with pytest.raises(HubError, match=r"chat_template.jinja line 1: Hugging Face token") as err:
        stage_repo(adapter, CARD, tmp_path / "a", BASE_ID)
    assert TOKEN not in str(err.value)
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(HubError, match=r"lacks \['adapter_model.safetensors'\]"):
        stage_repo(adapter, CARD, tmp_path / "b", BASE_ID)


def test_local_hub_lays_out_the_repository_and_replaces_it_whole(staged, tmp_path):
    hub = LocalHub(root=str(tmp_path / "hub"))
    result = hub.publish(staged, REPO, commit_message="Publish v1")
    dest = tmp_path / "hub" / ORG / "router-llama31-8b-peft"
    assert result.location == str(dest) and result.uploaded and list(result.files) == REPO_FILES
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == REPO_FILES
    assert (dest / "README.md").read_text() == CARD
    (dest / "stale.bin").write_bytes(b"old")
    (staged / "README.md").write_text(CARD + "\nv2\n")
    hub.publish(staged, REPO, commit_message="Publish v2")
    assert not (dest / "stale.bin").exists() and (dest / "README.md").read_text().endswith("v2\n")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["router-llama31-8b-peft"]  # no temp folders left


def test_hf_hub_uploads_exactly_the_staged_files(staged, online):
    with FakeHub(token=TOKEN) as fake:
        hub = HfHub(token=TOKEN, endpoint=fake.endpoint, organization=ORG, private=True)
        result = hub.publish(staged, REPO, commit_message="Publish router adapter")
        repo = fake.repos[REPO]
        assert repo.private is True
        assert repo.files == {name: (staged / name).read_bytes() for name in REPO_FILES}
        assert repo.commits[0]["summary"] == "Publish router adapter"
        assert fake.unexpected == [] and fake.auth_failures == 0
        assert ("POST", "/api/repos/create") in fake.calls
        assert result.uploaded and result.commit == repo.commits[0]["oid"]
        assert result.location == f"{fake.endpoint}/{REPO}" and list(result.files) == REPO_FILES


def test_hf_hub_deletes_files_of_an_earlier_version_in_the_same_commit(staged, online):
    with FakeHub(token=TOKEN) as fake:
        hub = HfHub(token=TOKEN, endpoint=fake.endpoint, organization=ORG)
        (staged / "old_weights.bin").write_bytes(b"v1 only")
        hub.publish(staged, REPO, commit_message="v1")
        fake.repos[REPO].files[".gitattributes"] = b"*.safetensors filter=lfs\n"  # what the Hub creates
        (staged / "old_weights.bin").unlink()
        (staged / "README.md").write_text(CARD + "\nv2\n")
        result = hub.publish(staged, REPO, commit_message="v2")
        repo = fake.repos[REPO]
        assert sorted(repo.files) == sorted([*REPO_FILES, ".gitattributes"])  # old_weights.bin is gone
        assert repo.files["README.md"].decode().endswith("v2\n") and list(result.files) == REPO_FILES
        assert [c["summary"] for c in repo.commits] == ["v1", "v2"] and fake.unexpected == []


def test_hf_hub_honours_public_setting_and_existing_repositories(staged, online):
    public_repo = f"{ORG}/math-llama31-8b-peft"
    with FakeHub(token=TOKEN) as fake:
        hub = HfHub(token=TOKEN, endpoint=fake.endpoint, private=False)
        hub.publish(staged, public_repo, commit_message="first")
        hub.publish(staged, public_repo, commit_message="second")  # exists already: 409 is fine
        assert fake.repos[public_repo].private is False
        assert [c["summary"] for c in fake.repos[public_repo].commits] == ["first", "second"]


def test_hf_hub_rejected_token_is_a_clear_error_that_hides_the_token(staged, online):
    wrong = "hf_" + "x" * 34
    with FakeHub(token=TOKEN) as fake:
        with pytest.raises(HubError, match=r"HTTP 401") as err:
            HfHub(token=wrong, endpoint=fake.endpoint).publish(staged, REPO, commit_message="m")
        assert wrong not in str(err.value) and fake.repos == {}


def test_dry_run_lists_files_and_contacts_nothing(staged):
    with FakeHub(token=TOKEN) as fake:
        result = HfHub(endpoint=fake.endpoint, dry_run=True, private=True).publish(staged, REPO, commit_message="m")
        assert fake.calls == [] and fake.repos == {}
    assert not result.uploaded and result.dry_run and result.private is True
    assert list(result.files) == REPO_FILES
    assert result.bytes_total == sum((staged / f).stat().st_size for f in REPO_FILES)


def test_endpoint_defaults_to_hf_endpoint_then_the_public_hub(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert HfHub().resolved_endpoint() == "https://huggingface.co"
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example.org/")
    assert HfHub().resolved_endpoint() == "https://hf-mirror.example.org"
    assert HfHub(endpoint="http://127.0.0.1:9").resolved_endpoint() == "http://127.0.0.1:9"


def test_missing_token_names_hf_token(staged):
    with FakeHub(token=TOKEN) as fake:
        with pytest.raises(HubError, match=r"set the HF_TOKEN environment variable"):
            HfHub(token=None, endpoint=fake.endpoint).publish(staged, REPO, commit_message="m")
        assert fake.calls == []


def test_offline_mode_is_reported_before_any_request(staged, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with FakeHub(token=TOKEN) as fake:
        with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
            HfHub(token=TOKEN, endpoint=fake.endpoint).publish(staged, REPO, commit_message="m")
        assert fake.calls == []
