"""Turning a model spec into a LangChain chat model, and calling it the way the RLM loop needs.

Specs:
- ``"openai:gpt-4o-mini"``: OpenAI, key from ``OPENAI_API_KEY``.
- ``"openrouter:qwen/qwen3-coder"``: OpenRouter, key from ``OPENROUTER_API_KEY``.
- ``base_url="http://127.0.0.1:8080/v1"`` plus a model name: any OpenAI-compatible server
  (vLLM, llama.cpp, Ollama). No key needed.
- ``"anthropic:claude-sonnet-4-5"``, ``"google_genai:..."``, ``"ollama:..."``: any provider
  LangChain's ``init_chat_model`` knows (the ``providers`` extra), see :mod:`rlm_graph.models.providers`.
- any ``BaseChatModel`` instance, used as is.
- ``"local"`` (or nothing, with no API key set): the embedded default model, see
  :mod:`rlm_graph.models.local`.

Environment variables are read here (and in the CLI), never in graph nodes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel

from rlm_graph.errors import ConfigurationError

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"

#: Default cap on the tokens of one model reply.
DEFAULT_REPLY_TOKENS = 1024


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: the chat model and the label usage is counted under."""

    model: BaseChatModel
    label: str


def _openai(model: str, *, base_url: str | None, api_key: str, max_tokens: int, timeout: float, max_retries: int, **kw: Any) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    extra: dict[str, Any] = {}
    if base_url is not None:
        # OpenAI-compatible servers (llama.cpp among them) ignore max_completion_tokens,
        # which is what langchain-openai sends: pass the classic field too.
        extra["extra_body"] = {"max_tokens": max_tokens}
    from rlm_graph.models.pool import use_lease_pool
    from rlm_graph.models.wire import use_plain_requests

    chat = ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key,  # type: ignore[arg-type]
        max_tokens=max_tokens,  # type: ignore[call-arg]
        timeout=timeout,
        max_retries=max_retries,
        temperature=kw.pop("temperature", 0.0),
        stream_usage=True,
        **extra,
        **kw,
    )
    use_lease_pool(chat)  # httpcore's pool walks all its connections twice per request (see models/pool.py)
    return use_plain_requests(chat)  # the SDK's body transform cost ~0.4 ms per message per call


def resolve_model(
    spec: str | BaseChatModel | None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    max_tokens: int = DEFAULT_REPLY_TOKENS,
    timeout: float = 600.0,
    max_retries: int = 2,
    role: str = "root",
) -> ModelSpec:
    """Turn ``spec`` (and optionally a ``base_url``) into a chat model.

    Args:
        spec: a spec string (see the module docstring), a chat model instance, or None.
        base_url: an OpenAI-compatible server; ``spec`` is then the model name on it.
        api_key: overrides the key read from the environment.
        max_tokens: cap on one reply's tokens.
        timeout: seconds per HTTP request.
        max_retries: retries of a failed request (with the client's backoff).
        role: "root" or "sub", for the embedded model (each role has its own server).

    Raises:
        ConfigurationError: unknown spec or missing API key.

    Example:
        >>> resolve_model("m", base_url="http://127.0.0.1:8000/v1").label
        'm'
    """
    if isinstance(spec, BaseChatModel):
        return ModelSpec(spec, label_of(spec))
    if spec is not None and not isinstance(spec, str):
        raise ConfigurationError(f"model must be a spec string or a LangChain chat model, not {type(spec).__name__}")
    common = dict(max_tokens=max_tokens, timeout=timeout, max_retries=max_retries)
    if base_url:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must start with http:// or https://, got {base_url!r}")
        name = spec or "default"
        if ":" in name and name.split(":", 1)[0] in ("openai", "openrouter"):
            name = name.split(":", 1)[1]
        key = api_key or os.environ.get("RLM_GRAPH_API_KEY") or "none"
        return ModelSpec(_openai(name, base_url=base_url.rstrip("/"), api_key=key, **common), name)
    if spec is None:
        spec = default_spec()
    provider, _, name = spec.partition(":")
    if provider == "local" or spec == "local":
        from rlm_graph.models import local

        url = local.ensure_servers(roles=(role,))[role]
        alias = local.DEFAULT_ALIAS
        return ModelSpec(_openai(alias, base_url=url, api_key="none", **common), alias)
    if not name:
        raise ConfigurationError(
            f"unknown model spec {spec!r}: use 'openai:MODEL', 'openrouter:MODEL', 'local', 'PROVIDER:MODEL' "
            "(any LangChain provider, e.g. 'anthropic:claude-sonnet-4-5'), or a model name together with base_url"
        )
    if provider == "openai":
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigurationError("OPENAI_API_KEY is not set (needed for model spec 'openai:...')")
        return ModelSpec(_openai(name, base_url=os.environ.get("OPENAI_BASE_URL"), api_key=key, **common), name)
    if provider == "openrouter":
        key = api_key or os.environ.get("OPENROUTER_API_KEY")
        if not key:
            raise ConfigurationError("OPENROUTER_API_KEY is not set (needed for model spec 'openrouter:...')")
        return ModelSpec(_openai(name, base_url=OPENROUTER_BASE_URL, api_key=key, **common), name)
    from rlm_graph.models.providers import provider_model

    model = provider_model(provider, name, api_key=api_key, **common)  # type: ignore[arg-type]
    return ModelSpec(model, name)


def label_of(model: BaseChatModel) -> str:
    """The name a chat model instance's usage is counted under: its model name, else its class."""
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)


def cached_model(
    spec: str | None,
    base_url: str | None,
    *,
    role: str = "root",
    max_tokens: int = DEFAULT_REPLY_TOKENS,
    api_key: str | None = None,
    timeout: float = 600.0,
    max_retries: int = 2,
) -> ModelSpec:
    """:func:`resolve_model` for spec strings, built once per process for the same arguments.

    A run's settings name models by spec; every node of every run asks for them, so each distinct
    spec is built once (a failed resolution is not cached: the next run tries again).
    """
    if spec is None and not base_url:
        spec = default_spec()  # resolved now, so a changed environment is a different key
    # The environment a spec reads its key and endpoint from is part of the key: a model built while
    # OPENAI_API_KEY was set must not be handed out after it was unset (or changed).
    env = tuple(os.environ.get(name) for name in _ENV_OF_MODELS)
    return _cached_model(spec, base_url, role, max_tokens, api_key, timeout, max_retries, env)


_ENV_OF_MODELS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "RLM_GRAPH_API_KEY")


@functools.lru_cache(maxsize=64)
def _cached_model(
    spec: str | None,
    base_url: str | None,
    role: str,
    max_tokens: int,
    api_key: str | None,
    timeout: float,
    max_retries: int,
    env: tuple[str | None, ...],
) -> ModelSpec:
    del env  # only part of the cache key
    return resolve_model(spec, base_url=base_url, api_key=api_key, max_tokens=max_tokens, timeout=timeout, max_retries=max_retries, role=role)


def default_spec() -> str:
    """The model used when none is given: OpenAI or OpenRouter when a key is set, else the embedded one."""
    if os.environ.get("RLM_GRAPH_MODEL"):
        return os.environ["RLM_GRAPH_MODEL"]
    if os.environ.get("OPENAI_API_KEY"):
        return "openai:gpt-4o-mini"
    if os.environ.get("OPENROUTER_API_KEY"):
        return "openrouter:qwen/qwen3-coder"
    return "local"


def settings_from_env() -> dict[str, Any]:
    """RLMContext fields (JSON values) for the served graph, from ``RLM_GRAPH_*`` environment variables.

    ``RLM_GRAPH_MODEL``, ``RLM_GRAPH_BASE_URL``, ``RLM_GRAPH_SUB_MODEL``, ``RLM_GRAPH_SUB_BASE_URL``,
    ``RLM_GRAPH_SANDBOX``, ``RLM_GRAPH_MAX_ITERATIONS``. Models are only named here; they are built
    when a run first needs them.
    """
    env = os.environ
    out: dict[str, Any] = {"model": env.get("RLM_GRAPH_MODEL") or None, "base_url": env.get("RLM_GRAPH_BASE_URL") or None}
    if env.get("RLM_GRAPH_SUB_MODEL"):
        out["sub_model"] = env["RLM_GRAPH_SUB_MODEL"]
    if env.get("RLM_GRAPH_SUB_BASE_URL"):
        out["sub_base_url"] = env["RLM_GRAPH_SUB_BASE_URL"]
    if env.get("RLM_GRAPH_SANDBOX"):
        out["sandbox"] = env["RLM_GRAPH_SANDBOX"]
    if env.get("RLM_GRAPH_MAX_ITERATIONS"):
        try:
            out["limits"] = {"max_iterations": int(env["RLM_GRAPH_MAX_ITERATIONS"])}
        except ValueError:
            raise ConfigurationError(f"RLM_GRAPH_MAX_ITERATIONS must be a whole number, got {env['RLM_GRAPH_MAX_ITERATIONS']!r}") from None
    return out
