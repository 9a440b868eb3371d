# shellcheck shell=bash
# Source me (bash): `source scripts/env.sh`. Exports OPENBLAS_CORETYPE for this
# CPU unless the caller already set it (OpenBLAS reads it once, at library load,
# so it must be in the environment before moonfm/lua5.4 start; TOOLCHAIN.md P8).
# Written to be safe under the caller's `set -euo pipefail`.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  __moonfm_ct=$("$(dirname "${BASH_SOURCE[0]:-scripts/env.sh}")/openblas-coretype" || true)
  if [ -n "$__moonfm_ct" ]; then
    export OPENBLAS_CORETYPE="$__moonfm_ct"
  fi
  unset __moonfm_ct
fi
