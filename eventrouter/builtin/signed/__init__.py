"""Built-in source type ``signed``: any HMAC-signed webhook, configured instead of programmed.

See docs/signed-webhooks.md: the options, the presets (stripe, github, shopify, slack,
twilio) and a provider added in configuration alone.
"""

from __future__ import annotations

from collections.abc import Callable

from eventrouter.builtin.signed.presets import PRESETS
from eventrouter.builtin.signed.scheme import Scheme, Template, form_content, sign, verify
from eventrouter.builtin.signed.source import SignedOptions, SignedSource, with_preset
from eventrouter.hookspecs import hookimpl
from eventrouter.sources import Source

__all__ = [
    "PRESETS",
    "Scheme",
    "SignedOptions",
    "SignedSource",
    "Template",
    "form_content",
    "register_sources",
    "sign",
    "verify",
    "with_preset",
]


@hookimpl
def register_sources(register: Callable[[type[Source]], None]) -> None:
    register(SignedSource)
