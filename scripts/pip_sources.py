"""This machine's pip package sources, as build arguments for a container build (used by scripts/test-container.sh).

Reads pip's effective settings (`pip config list`, where `:env:` entries are the PIP_* variables) and prints
`KEY=value` lines for PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST and TORCH_INDEX_URL.
Local sources (file:// indexes, wheel folders) do not exist inside a build, so each is rewritten to a URL under
--serve-url, where the caller serves the same paths (the --roots) over HTTP on the loopback (the build
runs with --network host). Local sources come first, so large wheels found on disk are not downloaded again; the
remote index in effect (PyPI unless configured) stays as the last extra index. With local sources, TORCH_INDEX_URL
is empty (torch from the pip index in effect); without any, it is left unset (the Dockerfile's default).

    python3 scripts/pip_sources.py --serve-url http://127.0.0.1:8765   # KEY=value lines
    python3 scripts/pip_sources.py --roots                             # the local paths to serve, one a line
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

PYPI = "https://pypi.org/simple"
KEYS = ("index-url", "extra-index-url", "find-links", "trusted-host")
# Later scopes win, as in pip: config files (global < user < site), then the environment.
SCOPE_ORDER = ("global", "user", "site", ":env:")


def pip_settings(pip: list[str]) -> dict[str, list[str]]:
    out = subprocess.run([*pip, "config", "list"], capture_output=True, text=True, check=True).stdout
    best: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        scope, _, key = name.rpartition(".")
        if not sep or key not in KEYS or scope not in SCOPE_ORDER:
            continue
        rank = SCOPE_ORDER.index(scope)
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, value.strip().strip("'\""))
    return {key: value.split() for key, (_, value) in best.items()}


def local_path(entry: str) -> Path | None:
    """The path of a local source (file:// URL or plain path), or None for a remote URL."""
    parsed = urlparse(entry)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if not parsed.scheme:
        return Path(entry).resolve()
    return None


def build_args(settings: dict[str, list[str]], serve_url: str) -> tuple[dict[str, str], list[Path]]:
    remote_index = (settings.get("index-url") or [PYPI])[0]
    indexes = [*settings.get("index-url", [PYPI])[:1], *settings.get("extra-index-url", [])]
    links = settings.get("find-links", [])
    roots: list[Path] = []

    def served(entry: str, index: bool = False) -> str | None:
        path = local_path(entry)
        if path is None:
            return entry
        if not path.exists():
            return None
        # An index's pages may link to files beside it (../../files/...): serve the folder above `simple/`.
        roots.append(path.parent if index else path)
        return serve_url.rstrip("/") + path.as_posix() + ("/" if path.is_dir() else "")

    local_indexes = [served(i, index=True) for i in indexes if local_path(i) is not None]
    remote_indexes = [i for i in indexes if local_path(i) is None]
    local_links = [served(link) for link in links]
    local_indexes = [i for i in local_indexes if i]
    local_links = [link for link in local_links if link]
    args: dict[str, str] = {}
    if local_indexes:
        args["PIP_INDEX_URL"] = local_indexes[0]
        extras = local_indexes[1:] + [i for i in remote_indexes if i != remote_index] + [remote_index]
        args["PIP_EXTRA_INDEX_URL"] = " ".join(dict.fromkeys(extras))
    else:
        if settings.get("index-url"):
            args["PIP_INDEX_URL"] = remote_index
        if settings.get("extra-index-url"):
            args["PIP_EXTRA_INDEX_URL"] = " ".join(settings["extra-index-url"])
    if local_links:
        args["PIP_FIND_LINKS"] = " ".join(local_links)
    trusted = list(settings.get("trusted-host", []))
    if roots:
        trusted.append(urlparse(serve_url).hostname or "127.0.0.1")
        args["TORCH_INDEX_URL"] = ""
    if trusted:
        args["PIP_TRUSTED_HOST"] = " ".join(dict.fromkeys(trusted))
    return args, roots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-url", default="http://127.0.0.1:8765")
    parser.add_argument("--roots", action="store_true", help="print the local paths to serve instead")
    parser.add_argument("--pip", default=f"{sys.executable} -m pip", help="the pip command whose settings count")
    opts = parser.parse_args()
    env_pip = os.environ.get("PIP_SOURCES_PIP")
    args, roots = build_args(pip_settings((env_pip or opts.pip).split()), opts.serve_url)
    if opts.roots:
        print("\n".join(str(r) for r in dict.fromkeys(roots)))
    else:
        print("\n".join(f"{key}={value}" for key, value in args.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
