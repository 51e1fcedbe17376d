#!/bin/sh
# `pip install` for the image build (installed in the builder stage as `pip-install`; not in the final image).
# pip reads its package sources from the build arguments PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS and
# PIP_TRUSTED_HOST (environment variables inside RUN). Compose passes them through from the builder's shell, where
# they may name host paths (a local wheel folder, file:// indexes) that do not exist inside the build: such entries
# are dropped with a note, URLs and paths that exist here are kept, and a variable left empty is unset, so pip falls
# back to its default instead of an empty index.
#   pip-install [pip install arguments...]
set -eu

keep_sources() {  # $1: variable name; its value is a space-separated list of URLs or paths
    value=$(printenv "$1" || true)
    kept=""
    for entry in $value; do
        case "$entry" in
            http://* | https://*) kept="$kept $entry" ;;
            file://*) if [ -e "${entry#file://}" ]; then kept="$kept $entry"; else dropped="$dropped $1=$entry"; fi ;;
            *) if [ -e "$entry" ]; then kept="$kept $entry"; else dropped="$dropped $1=$entry"; fi ;;
        esac
    done
    kept=${kept# }
    if [ -n "$kept" ]; then export "$1=$kept"; else unset "$1"; fi
}

dropped=""
for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do keep_sources "$name"; done
if [ -z "${PIP_TRUSTED_HOST:-}" ]; then unset PIP_TRUSTED_HOST; fi
if [ -n "$dropped" ]; then
    echo "pip-install: ignoring package sources that do not exist inside the build:$dropped" >&2
fi
exec pip install "$@"
