#!/usr/bin/env bash
# Compile hello_as with the pinned AssemblyScript compiler (npm ci first).
#   hello_as/build.sh [OUTFILE]     default: hello_as/hello_as.wasm
# ../build.sh calls this; `npm run build` too.
#
# --runtime stub   no GC; the code allocates nothing, so no runtime is linked
#                  in and the module has no start function
# --use abort=...  a custom abort that reverts, so env.abort is not imported
# --noAssert       assert() compiles to nothing
# Features: asc 0.28's defaults only (mutable-globals, sign-extension,
# nontrapping-f2i, bulk-memory: all within ABI 1); simd, threads,
# reference-types, gc, relaxed-simd and stringref stay off (they need --enable).
# No --debug / --sourceMap: no name section or paths, so the output is
# byte-for-byte reproducible.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
OUTFILE="${1:-hello_as.wasm}"
exec ./node_modules/.bin/asc assembly/index.ts \
    --outFile "$OUTFILE" \
    --runtime stub --noAssert --optimize \
    --use abort=assembly/index/wesAbort
