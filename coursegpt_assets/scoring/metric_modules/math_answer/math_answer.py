"""`evaluate` module for math answers: extracted final answer vs gold, loaded offline by path.

    metric = coursegpt_assets.scoring.metric_modules.load_metric("math_answer")
    report = metric.compute(predictions=[model_text, ...], references=[gold_answer, ...])

Optional keyword arguments: `options` (per row, the choice texts or None, so letter answers and
option texts are judged), `topics` and `file_labels` (per row, for the level/topic/file groups).
Returns `score_math`'s report: accuracy (math_verify equivalence) and the seed's exact match.
"""

import datasets
import evaluate

from coursegpt_assets.scoring.math_answers import score_math

_CITATION = "CourseGPT-Pro math agent evaluation (exact match), extended with math-verify by CourseGPT Forge."
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, the model's full answers.
    references: list of str, the gold answers (a letter for single-choice rows).
    options: optional list (per row) of the choice texts or None.
    topics: optional list (per row) of "Level--Area--Subtopic" strings.
    file_labels: optional list (per row) of benchmark file labels.
Returns:
    dict with metrics (overall, by_level, by_file, by_topic) and per-sample records.
"""


def _per_row(values, count, name):
    if values is None:
        return [None] * count
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries for {count} predictions")
    return list(values)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MathAnswer(evaluate.Metric):
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

    def _compute(self, predictions, references, options=None, topics=None, file_labels=None):
        count = len(predictions)
        rows = [
            {"answer": gold, "options": choices, "topic": topic}
            for gold, choices, topic in zip(references, _per_row(options, count, "options"), _per_row(topics, count, "topics"), strict=True)
        ]
        labels = None if file_labels is None else _per_row(file_labels, count, "file_labels")
        return score_math(rows, list(predictions), file_labels=labels)
