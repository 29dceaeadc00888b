"""Translators of natural-language questions into catalog SQL.

``LEDGERCORE_CHAT_TRANSLATOR`` picks one: ``builtin`` (default: offline,
deterministic) or ``openai`` (any OpenAI-compatible chat-completions server).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chat.translators.base import ChatContext, Translation, Translator, TranslatorUnavailable, Turn

__all__ = ["ChatContext", "Translation", "Translator", "TranslatorUnavailable", "Turn", "get_translator"]

NAMES = ("builtin", "openai")


def get_translator(name: str | None = None) -> Translator:
    name = (name or getattr(settings, "LEDGERCORE_CHAT_TRANSLATOR", "builtin") or "builtin").lower()
    if name == "builtin":
        from chat.translators.builtin import BuiltinTranslator

        return BuiltinTranslator()
    if name == "openai":
        from chat.translators.openai import OpenAITranslator

        return OpenAITranslator.from_settings()
    raise ImproperlyConfigured(f"LEDGERCORE_CHAT_TRANSLATOR: expected one of {', '.join(NAMES)}, got {name!r}")
