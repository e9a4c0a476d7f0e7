// hello_as: a WES ABI 1 example contract in AssemblyScript.
//
// Entry points (all () -> ()):
//   greet    input = a name (raw bytes, any length, may be empty).
//            return_data = "hello, " + name (raw bytes); also logs the same bytes.
//   sum_f64  input = n little-endian f64 values (8*n bytes, n >= 0).
//            sum = 0.0 + x0 + x1 + ... (left to right);
//            result = sum + sum / sum; return_data = the 8 raw bytes (LE) of result.
//            Empty input gives 0.0 + 0.0/0.0 = NaN, computed at run time
//            (a test of NaN canonicalization: x86 hardware yields 0xFFF8...,
//            the canonical NaN is 0x7FF8000000000000).
//
// The code allocates nothing: it works in linear memory from __heap_base and
// grows memory itself, so the stub runtime (--runtime stub) is never linked in
// and the module has no start function. A custom abort (--use
// abort=assembly/index/wesAbort) reverts instead of importing env.abort.
// See ../build.sh for the exact compiler flags.

import { input_read, input_size, log, return_data, revert } from "../../sdk/wes";

// Make sure [0, end) is inside linear memory, growing it if needed.
function ensureMemory(end: usize): void {
  const have = (<usize>memory.size()) << 16;
  if (end > have) {
    const pages = <i32>((end - have + 0xffff) >>> 16);
    if (memory.grow(pages) < 0) unreachable();
  }
}

// Copy the low byte of each UTF-16 code unit of `s` to `dst` (the messages here
// are ASCII); returns the number of bytes written.
function asciiTo(dst: usize, s: string): i32 {
  const n = s.length;
  ensureMemory(dst + <usize>n);
  const src = changetype<usize>(s);
  for (let i = 0; i < n; i++) {
    store<u8>(dst + <usize>i, <u8>load<u16>(src + (<usize>i << 1)));
  }
  return n;
}

function fail(message: string): void {
  const n = asciiTo(__heap_base, message);
  revert(__heap_base, n);
  unreachable();
}

// Wired in with `--use abort=assembly/index/wesAbort`: any runtime failure
// reverts with "abort: <message>" (non-ASCII characters are truncated to
// their low byte) instead of importing env.abort.
function wesAbort(
  message: string | null,
  fileName: string | null,
  lineNumber: u32,
  columnNumber: u32,
): void {
  let n = asciiTo(__heap_base, "abort");
  if (message !== null) {
    n += asciiTo(__heap_base + <usize>n, ": ");
    n += asciiTo(__heap_base + <usize>n, message);
  }
  revert(__heap_base, n);
  unreachable();
}

// Read the whole call input to `dst`; returns its length.
function readInputTo(dst: usize): i32 {
  const n = input_size();
  if (n < 0) unreachable();
  ensureMemory(dst + <usize>n);
  if (n > 0) input_read(dst);
  return n;
}

export function greet(): void {
  const out = __heap_base;
  const plen = asciiTo(out, "hello, ");
  const nlen = readInputTo(out + <usize>plen);
  log(out, plen + nlen);
  return_data(out, plen + nlen);
}

export function sum_f64(): void {
  const p = __heap_base;
  const n = readInputTo(p);
  if (n % 8 != 0) fail("bad input: sum_f64 needs a multiple of 8 bytes (f64 LE values)");
  let sum: f64 = 0.0;
  for (let i = 0; i < n; i += 8) sum += load<f64>(p + <usize>i);
  const result: f64 = sum + sum / sum;
  store<f64>(p, result);
  return_data(p, 8);
}
