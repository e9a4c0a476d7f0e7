#!/usr/bin/env bash
# Rebuild the example contracts: <name>/<name>.wasm for counter, token, notary, escrow,
# hello_as.
#
#   examples/contracts/build.sh            rebuild in place (the checked-in .wasm files)
#   examples/contracts/build.sh OUTDIR     write OUTDIR/<name>/<name>.wasm instead
#
# Each step is skipped, with a message, when its toolchain is absent:
#   counter   Python with wasmtime (wasmtime.wat2wasm); $PYTHON, else python3,
#             else the repo's .venv/bin/python
#   token,    clang + wasm-ld (Debian 12: apt-get install clang lld -> 14.0.6);
#   notary,   notary and escrow include sdk/wes.h
#   escrow
#   hello_as  node + hello_as/node_modules (assemblyscript, pinned in
#             package.json/package-lock.json). When node_modules is missing and
#             npm is present, `npm ci` installs it, unless WES_NO_INSTALL=1.
#
# The output is deterministic: no debug info, no producers section, no paths;
# rebuilding with the same toolchain versions gives byte-identical files
# (tests/test_example_contracts_build.py checks it).
# Exit status: 0 when every step built or was skipped, 1 when a step failed.
# (Steps run inside `if`, where set -e is off: each command checks its status.)
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$HERE}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
failed=0

say() { printf 'build.sh: %s\n' "$*"; }

# ---- counter: WAT -> wasm with wasmtime-py's wat2wasm ----------------------
build_counter() {
    local py=""
    for cand in "${PYTHON:-}" python3 "$REPO/.venv/bin/python"; do
        [ -n "$cand" ] || continue
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import wasmtime' >/dev/null 2>&1; then
            py="$cand"; break
        fi
    done
    if [ -z "$py" ]; then
        say "skip counter: no Python with the wasmtime package (set PYTHON=...)"
        return 0
    fi
    mkdir -p "$OUT/counter"
    "$py" - "$HERE/counter/counter.wat" "$OUT/counter/counter.wasm" <<'PY'
import sys, wasmtime
src, dst = sys.argv[1], sys.argv[2]
with open(src, "r", encoding="utf-8") as f:
    wasm = bytes(wasmtime.wat2wasm(f.read()))
with open(dst, "wb") as f:
    f.write(wasm)
PY
    [ $? -eq 0 ] || return 1
    say "built counter/counter.wasm (wasmtime $("$py" -c 'import importlib.metadata as m; print(m.version("wasmtime"))'))"
}

# ---- token, notary: freestanding C -> wasm32 with clang + wasm-ld ------------
build_c() {
    local name="$1" cc="${CLANG:-clang}"
    if ! command -v "$cc" >/dev/null 2>&1; then
        say "skip $name: clang not found (apt-get install clang lld)"; return 0
    fi
    if ! command -v wasm-ld >/dev/null 2>&1 && ! command -v wasm-ld-14 >/dev/null 2>&1; then
        say "skip $name: wasm-ld not found (apt-get install lld)"; return 0
    fi
    mkdir -p "$OUT/$name"
    # -mcpu=mvp: no post-MVP features at all (newer clangs enable
    # reference-types/multivalue/bulk-memory in the default "generic" CPU).
    # Imports are declared with import_module("wes") and there is no
    # --allow-undefined, so any other undefined symbol is a link error.
    # --strip-all drops the name and producers sections (deterministic bytes).
    (cd "$HERE/$name" && "$cc" --target=wasm32 -mcpu=mvp \
        -nostdlib -ffreestanding -fno-builtin -O2 -Wall -Wextra \
        -Wl,--no-entry -Wl,--stack-first -Wl,-z,stack-size=65536 \
        -Wl,--initial-memory=131072 -Wl,--strip-all \
        -o "$OUT/$name/$name.wasm" "$name.c") || return 1
    chmod 644 "$OUT/$name/$name.wasm"
    say "built $name/$name.wasm ($("$cc" --version | head -n1))"
}
build_token() { build_c token; }
build_notary() { build_c notary; }
build_escrow() { build_c escrow; }

# ---- hello_as: AssemblyScript -> wasm with asc ------------------------------
build_hello_as() {
    local dir="$HERE/hello_as"
    if ! command -v node >/dev/null 2>&1; then
        say "skip hello_as: node not found"; return 0
    fi
    if [ ! -x "$dir/node_modules/.bin/asc" ]; then
        if [ "${WES_NO_INSTALL:-0}" != "1" ] && command -v npm >/dev/null 2>&1; then
            say "hello_as: installing assemblyscript with npm ci"
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
        else
            say "skip hello_as: assemblyscript not installed (cd examples/contracts/hello_as && npm ci)"
            return 0
        fi
    fi
    mkdir -p "$OUT/hello_as"
    # flags and why: see hello_as/build.sh
    bash "$dir/build.sh" "$OUT/hello_as/hello_as.wasm" || return 1
    say "built hello_as/hello_as.wasm (assemblyscript $(cd "$dir" && ./node_modules/.bin/asc --version | awk '{print $2}'))"
}

for step in build_counter build_token build_notary build_escrow build_hello_as; do
    if ! "$step"; then
        say "FAILED: ${step#build_}"
        failed=1
    fi
done
exit "$failed"
