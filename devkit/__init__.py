"""The development kit: builders the tests and the benchmarks share, written once: tiny checkpoints with random
weights (`checkpoints`), generated images (`images`), the app in-process (`asgi`), a real server process
(`server`) and waiting for a condition (`waiting`).

Imported one way, `devkit.<module>`, by tests/ and bench/ alike; it is not part of the installed package.
Fixtures stay in the conftest.py files; they build what they return with these functions.
"""
