"""`evaluate` module for the code agent: execution-based pass@k in the project sandbox, offline by path.

    metric = evaluate.load("<package>/scoring/metric_modules/code_pass_at_k")
    report = metric.compute(predictions=[[completion, ...], ...], references=[[assert, ...], ...], k=[1])

Each prediction is one completion or a list of n completions for a problem (code possibly in a
```python fence); each reference is that problem's `testcase` list of assert strings. Optional
keyword arguments: `entry_points` (list of str, picks the right fenced block), `prompts` (list of str:
the HumanEval prompt a problem's solution follows, "" for none), `k` (list of int,
each <= n), `timeout_s`, `workers`, `allow_unsandboxed`. Returns `score_code`'s report.
"""

import datasets
import evaluate

from coursegpt_assets.scoring.code_eval import score_code

_CITATION = "Chen et al. 2021, Evaluating Large Language Models Trained on Code (unbiased pass@k)."
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, or list of list of str (n candidates per problem).
    references: list of list of str, the problem's assert statements.
    entry_points: optional list of str, the function each problem asks for.
    prompts: optional list of str, the code each solution follows (HumanEval's prompt; "" for none).
    k: list of int, the k of pass@k (default [1]); every k must be <= n.
    timeout_s: float, wall-clock seconds per program (default 10).
    workers: int, parallel sandboxes (default: CPU count).
    allow_unsandboxed: bool, run with rlimits only when bwrap/cgroups are missing (default False).
Returns:
    dict with metrics.overall ({"problems", "samples", "pass@k"..., "reasons"}), samples, config.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CodePassAtK(evaluate.Metric):
    def _info(self):
        references = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("string")), "references": references}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": references}),
            ],
        )

    def _compute(
        self,
        predictions,
        references,
        entry_points=None,
        prompts=None,
        k=(1,),
        timeout_s=10,
        workers=None,
        allow_unsandboxed=False,
    ):
        if entry_points is not None and len(entry_points) != len(references):
            raise ValueError(f"entry_points has {len(entry_points)} entries for {len(references)} references")
        if prompts is not None and len(prompts) != len(references):
            raise ValueError(f"prompts has {len(prompts)} entries for {len(references)} references")
        rows = [
            {"entry_point": entry_points[i] if entry_points else "", "testcase": list(tests),
             "prompt": prompts[i] if prompts else ""}
            for i, tests in enumerate(references)
        ]
        completions = [p if isinstance(p, str) else list(p) for p in predictions]
        return score_code(
            rows,
            completions,
            workers=workers,
            timeout_s=timeout_s,
            ks=tuple(k),
            allow_unsandboxed=allow_unsandboxed,
        )
