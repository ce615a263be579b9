"""Chat models of any LangChain provider: ``"provider:model"`` specs through ``init_chat_model``.

``"anthropic:claude-sonnet-4-5"``, ``"google_genai:gemini-2.5-flash"``, ``"mistralai:..."``,
``"ollama:qwen2.5-coder"``, ``"bedrock:..."``: any provider LangChain's ``init_chat_model`` knows,
built by it with the RLM's reply cap, timeout and retries. It needs the ``providers`` extra
(``langchain`` and the common integration packages) or, for one provider, ``langchain`` and that
provider's package; a missing package is one :class:`ConfigurationError` naming the pip install.
Keys come from each provider's own environment variable (``ANTHROPIC_API_KEY`` ...), or ``api_key``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rlm_graph.errors import ConfigurationError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

#: The pip command that brings LangChain's provider support and the common providers.
PROVIDERS_INSTALL = "pip install 'rlm-graph[providers]'"


def provider_model(
    provider: str,
    name: str,
    *,
    max_tokens: int,
    timeout: float,
    max_retries: int,
    api_key: str | None = None,
) -> BaseChatModel:
    """The chat model ``name`` of LangChain provider ``provider``, greedy (temperature 0).

    Raises:
        ConfigurationError: LangChain or the provider's package is missing (the message names the
            pip install), the provider is unknown, or the provider refused the settings.
    """
    spec = f"{provider}:{name}"
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ConfigurationError(
            f"model spec {spec!r} needs LangChain's provider support: {PROVIDERS_INSTALL} "
            "(or pip install langchain and the provider's langchain-* package)"
        ) from None
    options: dict[str, object] = {"temperature": 0.0, "max_tokens": max_tokens, "timeout": timeout, "max_retries": max_retries}
    if api_key:
        options["api_key"] = api_key
    try:
        model = init_chat_model(name, model_provider=provider, **options)
    except ImportError as exc:
        named = re.search(r"pip install ([A-Za-z0-9_.\-\[\]]+)", str(exc))
        needed = named.group(1) if named else f"langchain-{provider.replace('_', '-')}"
        raise ConfigurationError(f"model spec {spec!r} needs the {needed} package: pip install {needed}") from None
    except ValueError as exc:  # an unknown provider, or settings the provider's model class refused
        text = str(exc)
        if "Unsupported" in text and "provider" in text:
            known = text.rsplit("Supported model providers are:", 1)[-1].strip()
            raise ConfigurationError(
                f"unknown model provider {provider!r} in {spec!r}: use 'openai:MODEL', 'openrouter:MODEL', 'local', "
                f"a model name with base_url, or a LangChain provider ({known})"
            ) from None
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
        raise ConfigurationError(f"cannot build model {spec!r}: {first}") from None
    _check_key(model, spec)
    return model


def _check_key(model: BaseChatModel, spec: str) -> None:
    """Fail now, not at the first call, when the provider's key field is empty."""
    for field in type(model).model_fields:
        if field.endswith("api_key"):
            value = getattr(model, field, None)
            secret = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            if secret == "":
                raise ConfigurationError(
                    f"no API key for model spec {spec!r}: {type(model).__name__} found none in its environment "
                    "variable (ANTHROPIC_API_KEY for anthropic ...); set it, or pass api_key"
                )
