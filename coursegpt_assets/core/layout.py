"""Where every artifact lives in the store, relative to its root. One function per artifact kind.

    datasets/<agent>/raw/records.jsonl           raw_examples (one {"line", "record"|"error"} row per source row)
    datasets/<agent>/clean/records.jsonl         clean_examples (+ index.jsonl: [id, normalised prompt])
    quarantine/<agent>/<run_id>.jsonl            records clean_examples rejected, with line and reason
    datasets/<agent>/splits/<version>/<split>.jsonl  dataset_splits: one folder per written set
    datasets/<agent>/splits/manifest.json        names the published set's version; swapped in last
    benchmarks/<agent>/benchmark.jsonl           benchmark (+ manifest.json)
    tuning/<pair>/<split>.jsonl                  tuning_dataset (+ manifest.json)
    adapters/<pair>/<version>/                   adapter files; training_summary.json is written last
    adapters/<pair>/latest.json                  pointer to the newest complete adapter version
    reports/<pair>/<version>/                    evaluation report; report.json is written last
    reports/<pair>/<version>/finished_predictions.jsonl   remote answers kept while generating (resume)
    reports/<pair>/latest.json                   pointer to the newest report
    base_scores/<agent>/<base_model>/<key>/      the base model's answers and scores on a benchmark (shared by
                                                 every adapter version asked the same prompts); base_scores.json last
    cards/<pair>/README.md                       model card (+ card.json: the versions it describes, its sha256)
    leaderboards/<agent>/                        leaderboard.md, leaderboard.json, leaderboard.png
"""

from __future__ import annotations

SPLITS = ("train", "validation", "test")
TUNING_SPLITS = ("train", "validation")

# the files of one adapter folder (adapters/<pair>/<version>/) and of one report folder
SUMMARY_FILE = "training_summary.json"  # written last: an adapter folder is complete once it exists
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
LOSS_CURVE_FILE = "loss_curve.png"  # the local trainer's; Vertex adapters have none
JOB_RECORD = "tuning_job.json"  # what tuning_job submitted or ran
VERTEX_EXPORT = "vertex_export"  # the Vertex job's output_uri, below the adapter folder
REPORT_FILE = "report.json"  # written last: a report folder is complete once it exists
BASE_SCORES_FILE = "base_scores.json"  # written last: a base-scores folder is complete once it exists


def raw_records(agent: str) -> str:
    return f"datasets/{agent}/raw/records.jsonl"


def raw_manifest(agent: str) -> str:
    return f"datasets/{agent}/raw/manifest.json"


def clean_records(agent: str) -> str:
    return f"datasets/{agent}/clean/records.jsonl"


def clean_index(agent: str) -> str:
    """[id, normalised prompt] per clean record, in file order: what splitting and leakage checks need."""
    return f"datasets/{agent}/clean/index.jsonl"


def clean_manifest(agent: str) -> str:
    return f"datasets/{agent}/clean/manifest.json"


def quarantine(agent: str, run_id: str) -> str:
    return f"quarantine/{agent}/{run_id}.jsonl"


def splits_root(agent: str) -> str:
    return f"datasets/{agent}/splits"


def splits_dir(agent: str, version: str) -> str:
    """One written split set. It is read only once `splits_manifest` names its version, so a run killed
    while writing one leaves readers on the set published before."""
    return f"{splits_root(agent)}/{version}"


def split_records(agent: str, split: str, version: str) -> str:
    return f"{splits_dir(agent, version)}/{split}.jsonl"


def splits_manifest(agent: str) -> str:
    return f"{splits_root(agent)}/manifest.json"


def split_keys(manifest: dict, splits=SPLITS) -> dict[str, str]:
    """The keys of the split files a splits manifest publishes (KeyError when it names no version)."""
    return {s: split_records(manifest["agent"], s, manifest["version"]) for s in splits}


def benchmark_records(agent: str) -> str:
    return f"benchmarks/{agent}/benchmark.jsonl"


def benchmark_manifest(agent: str) -> str:
    return f"benchmarks/{agent}/manifest.json"


def tuning_records(pair: str, split: str) -> str:
    return f"tuning/{pair}/{split}.jsonl"


def tuning_manifest(pair: str) -> str:
    return f"tuning/{pair}/manifest.json"


def adapters_root() -> str:
    return "adapters"


def adapter_dir(pair: str, version: str) -> str:
    return f"adapters/{pair}/{version}"


def adapter_summary(pair: str, version: str) -> str:
    return f"{adapter_dir(pair, version)}/{SUMMARY_FILE}"


def adapter_latest(pair: str) -> str:
    return f"adapters/{pair}/latest.json"


def report_dir(pair: str, version: str) -> str:
    return f"reports/{pair}/{version}"


def report_file(pair: str, version: str) -> str:
    return f"{report_dir(pair, version)}/{REPORT_FILE}"


def prediction_log(pair: str, version: str) -> str:
    """A remote backend's finished answers while the report is being generated; removed once it is complete."""
    return f"{report_dir(pair, version)}/finished_predictions.jsonl"


def report_latest(pair: str) -> str:
    return f"reports/{pair}/latest.json"


def base_scores_dir(agent: str, base_model: str, key: str) -> str:
    return f"base_scores/{agent}/{base_model}/{key}"


def card(pair: str) -> str:
    return f"cards/{pair}/README.md"


def card_manifest(pair: str) -> str:
    """Beside the card: which adapter and report it describes, and the card's hash."""
    return f"cards/{pair}/card.json"


def leaderboard_dir(agent: str) -> str:
    return f"leaderboards/{agent}"
