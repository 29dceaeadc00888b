"""Translators of natural-language questions into catalog SQL.

``LEDGERCORE_CHAT_TRANSLATOR`` picks one: ``builtin`` (default: offline,
deterministic; ``chat.translators.semantic``, intents over a semantic model
of the catalog) or ``openai`` (any OpenAI-compatible chat-completions server).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chat.translators.base import ChatContext, Translation, Translator, TranslatorUnavailable, Turn

__all__ = ["ChatContext", "Translation", "Translator", "TranslatorUnavailable", "Turn", "get_translator"]

NAMES = ("builtin", "openai")


def get_translator(name: str | None = None) -> Translator:
    name = (name or getattr(settings, "LEDGERCORE_CHAT_TRANSLATOR", "builtin") or "builtin").lower()
    # Imported here: only the configured translator is loaded (each reads
    # the catalog and models of other apps).
    if name == "builtin":
        from chat.translators.semantic import SemanticTranslator  # noqa: PLC0415

        return SemanticTranslator()
    if name == "openai":
        from chat.translators.openai import OpenAITranslator  # noqa: PLC0415

        return OpenAITranslator.from_settings()
    raise ImproperlyConfigured(f"LEDGERCORE_CHAT_TRANSLATOR: expected one of {', '.join(NAMES)}, got {name!r}")
