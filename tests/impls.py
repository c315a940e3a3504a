"""Both twins of an ``edge._fast`` module as pytest params (ids ``py`` and ``c``).

The compiled twin is added only when it is built and SMARTSHARE_PURE is not set, so the pure
pass of the suite runs on the reference alone.
"""

import importlib

import pytest

from edge import _fast


def twins(name):
    params = [pytest.param(importlib.import_module(f"edge._fast.{name}_py"), id="py")]
    compiled = None if _fast.PURE else _fast.compiled_modules().get(name)
    if compiled is not None:
        params.append(pytest.param(compiled, id="c"))
    return params


def both(name):
    """``(reference, compiled or None)`` for differential tests."""
    reference = importlib.import_module(f"edge._fast.{name}_py")
    return reference, (None if _fast.PURE else _fast.compiled_modules().get(name))
