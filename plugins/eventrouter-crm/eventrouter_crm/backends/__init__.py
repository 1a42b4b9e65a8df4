"""The CRMs a ``crm`` sink can write to, by the name ``backend = "..."`` gives them.

Adding a CRM is one module that implements :class:`~eventrouter_crm.backends.base.CRMBackend`
and one line here.
"""

from __future__ import annotations

import importlib
from typing import cast

from eventrouter_crm.backends.base import CRMBackend, CRMBackendType

__all__ = ["BACKENDS", "CRMBackend", "CRMBackendType", "backend_type"]

#: backend name -> "module:Class" (imported only when a sink uses it)
BACKENDS: dict[str, str] = {
    "hubspot": "eventrouter_crm.backends.hubspot:HubSpotBackend",
}


def backend_type(name: str) -> CRMBackendType:
    """The backend class called ``name``; KeyError when there is none."""
    module_name, _, attribute = BACKENDS[name].partition(":")
    return cast(CRMBackendType, getattr(importlib.import_module(module_name), attribute))
