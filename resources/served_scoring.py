"""Held-out perplexity through an OpenAI-compatible server: `/v1/completions` with `echo` and `logprobs`.

Each rendered prompt + completion is sent once to the adapter's served name and once to the base model's
(`OpenAICompatibleServer.model` / `.base_model_name`) with `echo: true, logprobs: 1` and `max_tokens` =
`echo_max_tokens` (0 as OpenAI's API allows; vLLM wants 1, vllm#9336). The server answers the log-probability
of every token of the text it was sent, with each token's character offset; the completion's tokens are the
ones at or after the prompt's length (a token straddling the boundary belongs to the prompt) and before the
end of the text (anything generated after it is ignored). The server tokenises with its own tokenizer and
context, so no local max_length applies. A server that cannot answer (no echo or logprobs, as Ollama's
OpenAI API; the base model not served under `base_model_name`) leaves the perplexity "not measured", with its
answer as the reason: generation and scoring already succeeded. stdlib HTTP only, like the rest of the client.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from coursegpt_assets.scoring.perplexity import TokenScores, completion_logprob
from coursegpt_assets.training.labels import through_end_of_turn
from resources.inference import GenerationRequest, InferenceError, TokenScoringUnavailable
from resources.openai_compatible import OpenAICompatibleServer, http_json


def echo_logprob(server: OpenAICompatibleServer, url: str, model: str, prompt: str,
                 completion: str) -> tuple[float, int]:
    """(summed log-probability, tokens) of `completion` after `prompt`, as `model` on the server scores it."""
    payload = {"model": model, "prompt": prompt + completion, "echo": True, "logprobs": 1,
               "max_tokens": server.echo_max_tokens, "temperature": 0.0}
    body = http_json(url, payload, api_key=server.api_key, timeout_s=server.timeout_s, retry=server._retry())
    try:
        lp = body["choices"][0]["logprobs"]
        return completion_logprob(lp["tokens"], lp["token_logprobs"], lp["text_offset"], len(prompt),
                                  len(prompt) + len(completion))
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise InferenceError(f"{url}: model {model!r} returned no usable echo logprobs ({type(e).__name__}: {e}); "
                             "the server must answer echo + logprobs on /v1/completions (vLLM does)") from None


def score_on_server(server: OpenAICompatibleServer, request: GenerationRequest, texts: list[tuple[str, str]], *,
                    bos: str, log=None) -> TokenScores:
    """TokenScores of the held-out completions for the adapter and the base model (the server adds its BOS)."""
    root = server.base_url.rstrip("/")
    pieces = [(p.removeprefix(bos) if bos else p, through_end_of_turn(c, request.end_of_turn)) for p, c in texts]
    models = {"adapter": server._model(request), "base": server._base_name(request)}
    if not models["base"]:
        raise TokenScoringUnavailable("OpenAICompatibleServer.base_model_name is empty")
    nll, tokens = {}, {}
    for which, model in models.items():
        try:
            with ThreadPoolExecutor(max_workers=server.concurrency, thread_name_prefix="openai-score") as pool:
                scored = list(pool.map(lambda pc, m=model: echo_logprob(server, f"{root}/completions", m, *pc),
                                       pieces))
        except InferenceError as e:
            hint = ("set OpenAICompatibleServer.base_model_name to the name the server serves the base model under"
                    if which == "base" else "the generation above used the same name")
            raise TokenScoringUnavailable(f"{root} did not score the held-out completions with {model!r} ({e}); "
                                          f"{hint}") from None
        nll[which], tokens[which] = -sum(s for s, _ in scored), sum(n for _, n in scored)
        if log is not None:
            log.info(f"{request.pair}: scored {len(pieces)} held-out completions with {model!r} at {root}")
    if tokens["adapter"] != tokens["base"]:
        raise InferenceError(f"{request.pair}: {root} split the held-out completions into {tokens['adapter']} tokens "
                             f"for {models['adapter']!r} but {tokens['base']} for {models['base']!r}; an adapter "
                             "and its base model share one tokenizer")
    return TokenScores(nll["adapter"], nll["base"], tokens["adapter"])
