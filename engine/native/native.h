/* engine._native: the ABI's host functions, the fee meter and linear-memory access in C.
 *
 * engine/host.py and engine/execution.py are the reference: every charge, check,
 * order of operations and message here is theirs, and the tests run every contract
 * through both and compare results byte for byte. wasmtime's C API is reached
 * through function pointers looked up in the library wasmtime-py loaded (no headers,
 * no link-time dependency); the few struct layouts used are checked at load time. */

#ifndef WES_NATIVE_H
#define WES_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

/* Fee breakdown categories, in engine/fees.py CATEGORIES order (checked at load). */
enum { CAT_INSTRUCTIONS, CAT_HOST_CALLS, CAT_IO_BYTES, CAT_STORAGE_READ, CAT_STORAGE_WRITE,
       CAT_EVENTS, CAT_HASHING, CAT_SIGNATURES, CAT_CALLS, CAT_MEMORY, CAT_TABLE, CAT_EXECUTION,
       NCAT };
extern const char *const CATEGORY_NAMES[NCAT];

/* Capabilities, as bits, in engine/abi.py CAPABILITIES order (checked at load). */
enum { CAP_IO = 1, CAP_STATE_READ = 2, CAP_STATE_WRITE = 4, CAP_EVENTS = 8, CAP_CONTEXT = 16,
       CAP_CRYPTO = 32, CAP_DEBUG = 64, CAP_CALLS = 128, NCAP = 8 };
extern const char *const CAPABILITY_NAMES[NCAP];

/* In the order engine/runtime.py's _native_host passes them. */
typedef struct {
    int64_t instruction, host_call, byte_in, byte_out, storage_read, storage_read_key,
        storage_read_byte, storage_write, storage_write_byte, event, event_byte, hash, hash_byte,
        ed25519_verify, ed25519_byte, secp256k1_verify, secp256k1_recover, call, call_byte,
        memory_page, memory_free_pages;
} Prices;

typedef struct {
    int64_t max_return_bytes, max_logs, max_log_bytes, max_events, max_event_topic_bytes,
        max_event_data_bytes, max_key_bytes, max_value_bytes, max_memory_pages, max_read_entries,
        max_write_entries, max_write_bytes, max_input_bytes;
} Limits;

/* wasmtime C API entry points (wasmtime.h). Errors and traps are opaque pointers. */
typedef struct {
    void *(*get_fuel)(void *ctx, uint64_t *out);
    void *(*set_fuel)(void *ctx, uint64_t fuel);
    void (*set_epoch_deadline)(void *ctx, uint64_t ticks);
    size_t (*memory_data_size)(void *ctx, const void *memory);
    void *(*trap_new)(const char *message, size_t len);
    void (*error_delete)(void *error);
    bool (*export_get)(void *ctx, const void *instance, const char *name, size_t len, void *out);
    void *(*func_call_unchecked)(void *ctx, const void *func, void *args, size_t nargs,
                                 void **trap);
    void *(*memory_grow)(void *ctx, const void *memory, uint64_t delta, uint64_t *previous);
} WasmtimeApi;
extern WasmtimeApi wt;

struct Execution;

/* The Python functions host functions call (engine/runtime.py's _native_host, in this
 * order): digests bytes -> bytes; verifiers -> bool; recovery -> bytes or None; a
 * cross-contract call (execution, address, function, input, fee) -> (status, result). */
enum { CB_SHA256, CB_KECCAK256, CB_ED25519_VERIFY, CB_SECP256K1_VERIFY,
       CB_SECP256K1_RECOVER, CB_CALL, NCALLBACKS };

/* One per WasmEngine: prices, limits, callbacks, the execution in progress.
 * The address of this object is the `env` of every host function in the linker. */
typedef struct {
    PyObject_HEAD
    Prices prices;
    Limits limits;
    PyObject *callbacks[NCALLBACKS];
    struct Execution *current;    /* borrowed while a call runs */
    PyThreadState *thread;        /* saved while wasm runs without the GIL */
} Host;

/* One execution: the fee meter, the attached instance's memory, buffered outputs. */
typedef struct Execution {
    PyObject_HEAD
    Host *host;
    int64_t limit, used, breakdown[NCAT];
    uint64_t fuel_granted;
    int64_t pages_charged, max_pages, write_bytes;
    uint32_t denied;
    void *ctx;
    const void *memory; /* a wasmtime_memory_t kept alive by `warm` */
    uint8_t *mem_base;
    uint64_t mem_size;
    uint64_t block_height, block_time;
    PyObject *warm, *input, *caller, *address, *contract, *state;
    PyObject *return_data, *events, *logs, *read_set, *writes, *pending;
    PyObject *last_result; /* bytes: what wes.result_read copies */
} Execution;

extern PyTypeObject HostType, ExecutionType;
/* engine.errors classes, set when the module loads. */
extern PyObject *ContractTrap, *OutOfFee, *Reverted, *InternalError;

/* meter.c */
int ex_consume(Execution *ex, int64_t amount, int category, const char *reason);
int ex_trap(Execution *ex, const char *kind, const char *format, ...);
int ex_internal(Execution *ex, const char *message);
int ex_charge_growth(Execution *ex, uint64_t size);
PyObject *ex_read(Execution *ex, uint64_t ptr, uint64_t len, const char *what);
int ex_write(Execution *ex, uint64_t ptr, const char *data, uint64_t len, const char *what);
int ex_keep_python_error(Execution *ex);
PyObject *ex_raise_pending(Execution *ex);
uint64_t ex_fuel_cap(const Execution *ex);

/* A raw argument array: ValRaw is 16 bytes, so i32 argument i is word 4*i. */
typedef uint32_t *Args;
typedef int (*Impl)(Execution *ex, Args a, uint64_t *result);
enum { NO_RESULT, I32_RESULT, I64_RESULT };

/* The ABI table: name, implementation, signature (i: i32, I: i64), capability bit, result
 * kind. engine/abi.py is the source of truth; engine/raw.py checks this table against it
 * (every name, signature and capability) when the module loads. */
#define ABI_FUNCTIONS(X)                                                 \
    X(input_size, wes_input_size, "->i", CAP_IO, I32_RESULT)                \
    X(input_read, wes_input_read, "i->", CAP_IO, NO_RESULT)                 \
    X(return_data, wes_return_data, "ii->", CAP_IO, NO_RESULT)              \
    X(revert, wes_revert, "ii->", CAP_IO, NO_RESULT)                        \
    X(log, wes_log_line, "ii->", CAP_DEBUG, NO_RESULT)                      \
    X(emit_event, wes_emit_event, "iiii->", CAP_EVENTS, NO_RESULT)          \
    X(storage_read, wes_storage_read, "iiii->i", CAP_STATE_READ, I32_RESULT) \
    X(storage_write, wes_storage_write, "iiii->", CAP_STATE_WRITE, NO_RESULT) \
    X(storage_remove, wes_storage_remove, "ii->", CAP_STATE_WRITE, NO_RESULT) \
    X(caller, wes_caller, "i->i", CAP_CONTEXT, I32_RESULT)                  \
    X(self_address, wes_self_address, "i->i", CAP_CONTEXT, I32_RESULT)      \
    X(block_height, wes_block_height, "->I", CAP_CONTEXT, I64_RESULT)       \
    X(block_time, wes_block_time, "->I", CAP_CONTEXT, I64_RESULT)           \
    X(fee_left, wes_fee_left, "->I", CAP_CONTEXT, I64_RESULT)               \
    X(sha256, wes_sha256, "iii->", CAP_CRYPTO, NO_RESULT)                   \
    X(keccak256, wes_keccak256, "iii->", CAP_CRYPTO, NO_RESULT)             \
    X(ed25519_verify, wes_ed25519_verify, "iiii->i", CAP_CRYPTO, I32_RESULT) \
    X(secp256k1_verify, wes_secp256k1_verify, "iiii->i", CAP_CRYPTO, I32_RESULT) \
    X(secp256k1_recover, wes_secp256k1_recover, "iiii->i", CAP_CRYPTO, I32_RESULT) \
    X(call, wes_call, "iiiiiiI->i", CAP_CALLS, I32_RESULT)                  \
    X(result_size, wes_result_size, "->i", CAP_CALLS, I32_RESULT)           \
    X(result_read, wes_result_read, "i->", CAP_CALLS, NO_RESULT)            \
    X(memory_grow, wes_memory_grow, "i->i", 0, I32_RESULT)

/* abi.c: steps every host function shares (charge_in: bytes copied into wasm memory) */
int check_len(Execution *ex, uint64_t n, int64_t limit, const char *what);
int charge_in(Execution *ex, uint64_t n, const char *reason);
int write_bytes(Execution *ex, uint64_t dst, PyObject *data, const char *what);
/* abi.c: Execution.read_declared (the methods table is meter.c's) */
PyObject *ex_read_declared(Execution *ex, PyObject *keys);

/* abi.c, signatures.c, calls.c: the functions */
#define DECLARE(name, impl, sig, cap, result) int impl(Execution *ex, Args a, uint64_t *r);
ABI_FUNCTIONS(DECLARE)
#undef DECLARE

/* trampolines.c */
int register_host_functions(PyObject *module);
/* engine/native/packer.c: a Result as msgpack (Result.to_wire packed), and its fee record. */
PyObject *pack_result(PyObject *self, PyObject *result);

#endif
