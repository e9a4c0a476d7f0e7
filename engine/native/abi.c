/* The ABI's host functions (engine/host.py is the reference) and their trampolines.
 *
 * A trampoline is what wasmtime calls (wasmtime_func_unchecked_callback_t): it takes
 * the GIL back, charges the instructions run since the last look plus the call's base
 * price, checks the capability, runs the function, writes its result and lets the GIL
 * go. A failure becomes the execution's pending exception and a trap for wasmtime. */

#include "native.h"

/* A raw argument array: ValRaw is 16 bytes, so i32 argument i is word 4*i. */
typedef uint32_t *Args;
typedef int (*Impl)(Execution *ex, Args a, uint64_t *result);

/* -- shared steps ---------------------------------------------------------------------- */

static int check_len(Execution *ex, uint64_t n, int64_t limit, const char *what) {
    if ((int64_t)n > limit)
        return ex_trap(ex, "limit", "%s is %llu bytes, limit %lld", what, (unsigned long long)n,
                       (long long)limit);
    return 0;
}

static int charge_in(Execution *ex, uint64_t n, const char *reason) {
    return ex_consume(ex, (int64_t)n * ex->host->prices.byte_in, CAT_IO_BYTES, reason);
}

static int charge_out(Execution *ex, uint64_t n, const char *reason) {
    return ex_consume(ex, (int64_t)n * ex->host->prices.byte_out, CAT_IO_BYTES, reason);
}

static int write_bytes(Execution *ex, uint64_t dst, PyObject *data, const char *what) {
    return ex_write(ex, dst, PyBytes_AS_STRING(data), (uint64_t)PyBytes_GET_SIZE(data), what);
}

/* Reads see this execution's own writes first; a committed read joins the read set. */
static int storage_get(Execution *ex, PyObject *key, PyObject **value) {
    *value = NULL;
    PyObject *own = PyDict_GetItemWithError(ex->writes, key);
    if (own != NULL) {
        if (own != Py_None) {
            Py_INCREF(own);
            *value = own;
        }
        return 0;
    }
    if (PyErr_Occurred())
        return ex_keep_python_error(ex);
    PyObject *found = PyObject_CallMethod(ex->state, "get", "OO", ex->contract, key);
    if (found == NULL)
        return ex_keep_python_error(ex);
    PyObject *version = NULL;
    if (found == Py_None) {
        version = PyLong_FromLong(0);
    } else if (PyTuple_Check(found) && PyTuple_GET_SIZE(found) == 2 &&
               PyBytes_Check(PyTuple_GET_ITEM(found, 0))) {
        *value = PyTuple_GET_ITEM(found, 0);
        Py_INCREF(*value);
        version = PyTuple_GET_ITEM(found, 1);
        Py_INCREF(version);
    } else {
        PyErr_Format(PyExc_TypeError, "state.get returned %R, not (bytes, version)", found);
    }
    Py_DECREF(found);
    if (version == NULL || PyDict_SetDefault(ex->read_set, key, version) == NULL) {
        Py_XDECREF(version);
        Py_CLEAR(*value);
        return ex_keep_python_error(ex);
    }
    Py_DECREF(version);
    return 0;
}

static int hash(Execution *ex, Args a, PyObject *digest_fn, const char *reason,
                const char *what) {
    if (ex_consume(ex, (int64_t)a[4] * ex->host->prices.hash_byte, CAT_HASHING, reason) < 0)
        return -1;
    PyObject *data = ex_read(ex, a[0], a[4], what);
    if (data == NULL)
        return -1;
    PyObject *digest = PyObject_CallOneArg(digest_fn, data);
    Py_DECREF(data);
    if (digest == NULL)
        return ex_keep_python_error(ex);
    int rc = PyBytes_Check(digest) ? write_bytes(ex, a[8], digest, what)
                                   : ex_internal(ex, "a digest function returned no bytes");
    Py_DECREF(digest);
    return rc;
}

/* -- the functions ---------------------------------------------------------------------- */

static int input_size(Execution *ex, Args a, uint64_t *r) {
    *r = (uint64_t)PyBytes_GET_SIZE(ex->input);
    return 0;
}

static int input_read(Execution *ex, Args a, uint64_t *r) {
    if (charge_in(ex, (uint64_t)PyBytes_GET_SIZE(ex->input), "wes.input_read") < 0)
        return -1;
    return write_bytes(ex, a[0], ex->input, "input_read");
}

static int return_data(Execution *ex, Args a, uint64_t *r) {
    if (check_len(ex, a[4], ex->host->limits.max_return_bytes,
                  "wes.return_data: return data") < 0 ||
        charge_out(ex, a[4], "wes.return_data") < 0)
        return -1;
    PyObject *data = ex_read(ex, a[0], a[4], "return_data");
    if (data == NULL)
        return -1;
    Py_SETREF(ex->return_data, data);
    return 0;
}

static int revert(Execution *ex, Args a, uint64_t *r) {
    if (check_len(ex, a[4], ex->host->limits.max_return_bytes, "wes.revert: message") < 0 ||
        charge_out(ex, a[4], "wes.revert") < 0)
        return -1;
    PyObject *reason = ex_read(ex, a[0], a[4], "revert");
    if (reason == NULL)
        return -1;
    PyObject *exc = PyObject_CallOneArg(Reverted, reason);
    Py_DECREF(reason);
    if (exc == NULL)
        return ex_keep_python_error(ex);
    Py_XSETREF(ex->pending, exc);
    return -1;
}

static int log_line(Execution *ex, Args a, uint64_t *r) {
    if (charge_out(ex, a[4], "wes.log") < 0)
        return -1;
    PyObject *line = ex_read(ex, a[0], a[4], "log");
    if (line == NULL)
        return -1;
    /* Bounded, deterministically: lines past the count are dropped, long lines cut. */
    int rc = 0;
    const Limits *l = &ex->host->limits;
    if (PyList_GET_SIZE(ex->logs) < l->max_logs) {
        if (PyBytes_GET_SIZE(line) > l->max_log_bytes) {
            PyObject *cut = PyBytes_FromStringAndSize(PyBytes_AS_STRING(line), l->max_log_bytes);
            Py_SETREF(line, cut);
        }
        if (line == NULL || PyList_Append(ex->logs, line) < 0)
            rc = ex_keep_python_error(ex);
    }
    Py_XDECREF(line);
    return rc;
}

static int emit_event(Execution *ex, Args a, uint64_t *r) {
    const Limits *l = &ex->host->limits;
    if (check_len(ex, a[4], l->max_event_topic_bytes, "wes.emit_event: topic") < 0 ||
        check_len(ex, a[12], l->max_event_data_bytes, "wes.emit_event: data") < 0)
        return -1;
    if (PyList_GET_SIZE(ex->events) >= l->max_events)
        return ex_trap(ex, "limit", "wes.emit_event: over %lld events", (long long)l->max_events);
    const Prices *p = &ex->host->prices;
    if (ex_consume(ex, p->event + ((int64_t)a[4] + a[12]) * p->event_byte, CAT_EVENTS,
                   "wes.emit_event") < 0)
        return -1;
    PyObject *topic = ex_read(ex, a[0], a[4], "emit_event");
    if (topic == NULL)
        return -1;
    PyObject *data = ex_read(ex, a[8], a[12], "emit_event");
    if (data == NULL) {
        Py_DECREF(topic);
        return -1;
    }
    PyObject *event = PyTuple_Pack(2, topic, data);
    Py_DECREF(topic);
    Py_DECREF(data);
    int rc = (event == NULL || PyList_Append(ex->events, event) < 0) ? ex_keep_python_error(ex)
                                                                     : 0;
    Py_XDECREF(event);
    return rc;
}

static int storage_read(Execution *ex, Args a, uint64_t *r) {
    const Prices *p = &ex->host->prices;
    if (check_len(ex, a[4], ex->host->limits.max_key_bytes, "wes.storage_read: key") < 0 ||
        ex_consume(ex, p->storage_read + (int64_t)a[4] * p->storage_read_byte, CAT_STORAGE_READ,
                   "wes.storage_read") < 0)
        return -1;
    PyObject *key = ex_read(ex, a[0], a[4], "storage_read"), *value;
    if (key == NULL)
        return -1;
    int rc = storage_get(ex, key, &value);
    Py_DECREF(key);
    if (rc < 0)
        return -1;
    if (value == NULL) {
        *r = 0xFFFFFFFFu; /* -1 as an i32: absent */
        return 0;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(value);
    uint64_t copied = (uint64_t)size < a[12] ? (uint64_t)size : a[12];
    rc = ex_consume(ex, (int64_t)copied * p->storage_read_byte, CAT_STORAGE_READ,
                    "wes.storage_read");
    if (rc == 0 && copied)
        rc = ex_write(ex, a[8], PyBytes_AS_STRING(value), copied, "storage_read");
    Py_DECREF(value);
    *r = (uint64_t)size;
    return rc;
}

static int storage_write(Execution *ex, Args a, uint64_t *r) {
    const Prices *p = &ex->host->prices;
    const Limits *l = &ex->host->limits;
    if (check_len(ex, a[4], l->max_key_bytes, "wes.storage_write: key") < 0 ||
        check_len(ex, a[12], l->max_value_bytes, "wes.storage_write: value") < 0 ||
        ex_consume(ex, p->storage_write + ((int64_t)a[4] + a[12]) * p->storage_write_byte,
                   CAT_STORAGE_WRITE, "wes.storage_write") < 0)
        return -1;
    PyObject *key = ex_read(ex, a[0], a[4], "storage_write");
    if (key == NULL)
        return -1;
    PyObject *value = ex_read(ex, a[8], a[12], "storage_write");
    int rc = value == NULL ? -1
             : PyDict_SetItem(ex->writes, key, value) < 0 ? ex_keep_python_error(ex) : 0;
    Py_DECREF(key);
    Py_XDECREF(value);
    return rc;
}

static int storage_remove(Execution *ex, Args a, uint64_t *r) {
    const Prices *p = &ex->host->prices;
    if (check_len(ex, a[4], ex->host->limits.max_key_bytes, "wes.storage_remove: key") < 0 ||
        ex_consume(ex, p->storage_write + (int64_t)a[4] * p->storage_write_byte,
                   CAT_STORAGE_WRITE, "wes.storage_remove") < 0)
        return -1;
    PyObject *key = ex_read(ex, a[0], a[4], "storage_remove");
    if (key == NULL)
        return -1;
    int rc = PyDict_SetItem(ex->writes, key, Py_None) < 0 ? ex_keep_python_error(ex) : 0;
    Py_DECREF(key);
    return rc;
}

static int copy_out(Execution *ex, uint64_t dst, PyObject *data, const char *reason,
                    const char *what, uint64_t *r) {
    if (charge_in(ex, (uint64_t)PyBytes_GET_SIZE(data), reason) < 0 ||
        write_bytes(ex, dst, data, what) < 0)
        return -1;
    *r = (uint64_t)PyBytes_GET_SIZE(data);
    return 0;
}

static int caller(Execution *ex, Args a, uint64_t *r) {
    return copy_out(ex, a[0], ex->caller, "wes.caller", "caller", r);
}

static int self_address(Execution *ex, Args a, uint64_t *r) {
    return copy_out(ex, a[0], ex->address, "wes.self_address", "self_address", r);
}

static int block_height(Execution *ex, Args a, uint64_t *r) {
    *r = ex->block_height;
    return 0;
}

static int block_time(Execution *ex, Args a, uint64_t *r) {
    *r = ex->block_time;
    return 0;
}

static int fee_left(Execution *ex, Args a, uint64_t *r) {
    *r = (uint64_t)(ex->limit - ex->used);
    return 0;
}

static int sha256(Execution *ex, Args a, uint64_t *r) {
    return hash(ex, a, ex->host->sha256, "wes.sha256", "sha256");
}

static int keccak256(Execution *ex, Args a, uint64_t *r) {
    return hash(ex, a, ex->host->keccak256, "wes.keccak256", "keccak256");
}

/* -- trampolines -------------------------------------------------------------------------- */

enum { NO_RESULT, I32_RESULT, I64_RESULT };

/* The instructions run since the last look, then the call's base price (fused). */
static int enter(Execution *ex, const char *name) {
    uint64_t left;
    void *err = wt.get_fuel(ex->ctx, &left);
    if (err != NULL) {
        wt.error_delete(err);
        return ex_internal(ex, "wasmtime refused get_fuel");
    }
    int64_t charge = (int64_t)(ex->fuel_granted - left) * ex->host->prices.instruction;
    int64_t base = ex->host->prices.host_call;
    ex->fuel_granted = left;
    if (charge + base <= ex->limit - ex->used) {
        ex->used += charge + base;
        ex->breakdown[CAT_INSTRUCTIONS] += charge;
        ex->breakdown[CAT_HOST_CALLS] += base;
        return 0;
    }
    if (ex_consume(ex, charge, CAT_INSTRUCTIONS, NULL) < 0)
        return -1;
    return ex_consume(ex, base, CAT_HOST_CALLS, name);
}

static const char *capability_name(uint32_t bit);

static void *trampoline(Host *host, Args a, Impl impl, const char *name, uint32_t capability,
                        int result, const char *trapped) {
    if (host == NULL || host->thread == NULL) /* no call of ours is running */
        return wt.trap_new(trapped, strlen(trapped));
    PyEval_RestoreThread(host->thread);
    Execution *ex = host->current;
    uint64_t value = 0;
    int rc = enter(ex, name);
    if (rc == 0 && (ex->denied & capability))
        rc = ex_trap(ex, "capability_denied", "%s: capability denied (%s)", name,
                     capability_name(capability));
    if (rc == 0)
        rc = impl(ex, a, &value);
    if (rc == 0 && result != NO_RESULT) {
        a[0] = (uint32_t)value;
        if (result == I64_RESULT)
            a[1] = (uint32_t)(value >> 32);
    }
    host->thread = PyEval_SaveThread();
    return rc == 0 ? NULL : wt.trap_new(trapped, strlen(trapped));
}

/* The ABI table: name, implementation, signature (i: i32, I: i64), capability bit, result
 * kind. engine/abi.py is the source of truth; engine/raw.py checks this table against it
 * (every name, signature and capability) when the module loads. */
#define ABI_FUNCTIONS(X)                                                 \
    X(input_size, input_size, "->i", CAP_IO, I32_RESULT)                \
    X(input_read, input_read, "i->", CAP_IO, NO_RESULT)                 \
    X(return_data, return_data, "ii->", CAP_IO, NO_RESULT)              \
    X(revert, revert, "ii->", CAP_IO, NO_RESULT)                        \
    X(log, log_line, "ii->", CAP_DEBUG, NO_RESULT)                      \
    X(emit_event, emit_event, "iiii->", CAP_EVENTS, NO_RESULT)          \
    X(storage_read, storage_read, "iiii->i", CAP_STATE_READ, I32_RESULT) \
    X(storage_write, storage_write, "iiii->", CAP_STATE_WRITE, NO_RESULT) \
    X(storage_remove, storage_remove, "ii->", CAP_STATE_WRITE, NO_RESULT) \
    X(caller, caller, "i->i", CAP_CONTEXT, I32_RESULT)                  \
    X(self_address, self_address, "i->i", CAP_CONTEXT, I32_RESULT)      \
    X(block_height, block_height, "->I", CAP_CONTEXT, I64_RESULT)       \
    X(block_time, block_time, "->I", CAP_CONTEXT, I64_RESULT)           \
    X(fee_left, fee_left, "->I", CAP_CONTEXT, I64_RESULT)               \
    X(sha256, sha256, "iii->", CAP_CRYPTO, NO_RESULT)                   \
    X(keccak256, keccak256, "iii->", CAP_CRYPTO, NO_RESULT)

#define CALLBACK(name, impl, sig, cap, result)                                      \
    static void *cb_##name(void *env, void *caller_, Args a, size_t n) {           \
        return trampoline((Host *)env, a, impl, "wes." #name, cap, result,         \
                          "wes." #name " trapped");                                 \
    }
ABI_FUNCTIONS(CALLBACK)

static const char *capability_name(uint32_t bit) {
    for (int i = 0; i < NCAP; i++)
        if (bit == (1u << i))
            return CAPABILITY_NAMES[i];
    return "?";
}

/* FUNCTIONS: name -> (trampoline address, signature, capability), for
 * wasmtime_linker_define_func_unchecked and the load-time check; CAPABILITIES: the names
 * of the denied-mask bits, in bit order. */
int register_host_functions(PyObject *module) {
#define ENTRY(name, impl, sig, cap, result) {#name, (void *)cb_##name, sig, cap},
    struct { const char *name; void *fn; const char *signature; uint32_t cap; } table[] = {
        ABI_FUNCTIONS(ENTRY)
    };
#undef ENTRY
    PyObject *functions = PyDict_New();
    if (functions == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        PyObject *row = Py_BuildValue("(Nss)", PyLong_FromVoidPtr(table[i].fn),
                                      table[i].signature, capability_name(table[i].cap));
        if (row == NULL || PyDict_SetItemString(functions, table[i].name, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(functions);
            return -1;
        }
        Py_DECREF(row);
    }
    if (PyModule_AddObject(module, "FUNCTIONS", functions) < 0) {
        Py_DECREF(functions);
        return -1;
    }
    PyObject *caps = PyTuple_New(NCAP), *cats = PyTuple_New(NCAT);
    for (int i = 0; caps != NULL && i < NCAP; i++)
        PyTuple_SET_ITEM(caps, i, PyUnicode_FromString(CAPABILITY_NAMES[i]));
    for (int i = 0; cats != NULL && i < NCAT; i++)
        PyTuple_SET_ITEM(cats, i, PyUnicode_FromString(CATEGORY_NAMES[i]));
    if (caps == NULL || cats == NULL || PyModule_AddObject(module, "CAPABILITIES", caps) < 0) {
        Py_XDECREF(caps);
        Py_XDECREF(cats);
        return -1;
    }
    if (PyModule_AddObject(module, "CATEGORIES", cats) < 0) {
        Py_DECREF(cats);
        return -1;
    }
    return 0;
}
