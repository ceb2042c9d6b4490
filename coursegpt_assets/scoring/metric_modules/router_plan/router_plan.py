"""`evaluate` module for router plans: the seed's schema-aware metrics, loaded offline by path.

    metric = coursegpt_assets.scoring.metric_modules.load_metric("router_plan")
    report = metric.compute(predictions=[model_text, ...], references=[gold_json, ...])

Predictions are model texts (or JSON dumps); references are the gold ten-key objects as JSON
strings. Optional keyword arguments: `categories` (list of lists) and `thresholds` (a dict shaped
like the project's router_thresholds.json; defaults to it). Returns `score_router`'s report.
"""

import datasets
import evaluate

from coursegpt_assets.scoring.router_report import score_router

_CITATION = "CourseGPT-Pro Milestone 4 router evaluation (schema_score.py), reproduced by CourseGPT Forge."
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, the router's raw outputs (strict JSON expected).
    references: list of str, the gold router objects as JSON strings.
    categories: optional list of list of str, benchmark categories per row.
    thresholds: optional dict of min/max bounds per bucket.
    per_row: optional bool, also return each row's metrics (`per_row`).
Returns:
    dict with metrics (per seed bucket), lenient, by_category, parse, thresholds, error_samples,
    failure_examples.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RouterPlan(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.Value("string"),
            }),
        )

    def _compute(self, predictions, references, categories=None, thresholds=None, per_row=False):
        return score_router(list(references), list(predictions), categories=categories, thresholds=thresholds,
                            per_row=per_row)
