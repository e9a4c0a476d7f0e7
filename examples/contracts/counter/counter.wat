;; counter: a WES ABI 1 example contract.
;;
;; Storage: key "count" -> u64, 8 bytes little-endian (absent = 0).
;; Entry points (all () -> ()):
;;   init  writes count = 0
;;   incr  count += 1 (absent = 0), writes it back, return_data = new count
;;         (8 bytes LE), emits event topic "incr", data = new count (8 bytes LE)
;;   get   return_data = count (8 bytes LE; 8 zero bytes when absent); no writes,
;;         so it works in view mode
;;
;; Memory layout (one page):
;;   0..5    "count"  (storage key)
;;   8..12   "incr"   (event topic)
;;   16..24  value buffer (u64 LE)
(module
  (import "wes" "storage_read"  (func $storage_read  (param i32 i32 i32 i32) (result i32)))
  (import "wes" "storage_write" (func $storage_write (param i32 i32 i32 i32)))
  (import "wes" "return_data"   (func $return_data   (param i32 i32)))
  (import "wes" "emit_event"    (func $emit_event    (param i32 i32 i32 i32)))

  (memory (export "memory") 1)

  (data (i32.const 0) "count")
  (data (i32.const 8) "incr")

  ;; Load the stored count into the buffer at 16 and return it; absent or
  ;; shorter than 8 bytes counts as 0 (the buffer is zeroed first).
  (func $load (result i64)
    (i64.store (i32.const 16) (i64.const 0))
    (drop (call $storage_read (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 8)))
    (i64.load (i32.const 16)))

  (func $store (param $v i64)
    (i64.store (i32.const 16) (local.get $v))
    (call $storage_write (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 8)))

  (func (export "init")
    (call $store (i64.const 0)))

  (func (export "incr")
    (call $store (i64.add (call $load) (i64.const 1)))
    (call $return_data (i32.const 16) (i32.const 8))
    (call $emit_event (i32.const 8) (i32.const 4) (i32.const 16) (i32.const 8)))

  (func (export "get")
    (drop (call $load))
    (call $return_data (i32.const 16) (i32.const 8)))
)
