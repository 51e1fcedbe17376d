"""Builders shared by the tests and the benchmarks, written once: tiny checkpoints with random weights
(`checkpoints`), generated images (`images`), the app in-process (`asgi`), a real server process (`server`)
and waiting for a condition (`waiting`).

The tests import it as `helpers` (pytest puts tests/ on sys.path for tests/conftest.py); bench/ imports it as
`tests.helpers` from the repository root. A module here that needs another imports it relatively
(`from .images import ...`), never as `helpers.` or `tests.helpers.`, so that both names work.
Fixtures stay in the conftest.py files; they build what they return with these functions.
"""
