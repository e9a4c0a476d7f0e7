/* The ABI's host functions (engine/host.py is the reference): each charges before it does
 * its work, reads bounded arguments, works, and accounts. trampolines.c calls them. */

#include "native.h"

/* -- shared steps ---------------------------------------------------------------------- */

int check_len(Execution *ex, uint64_t n, int64_t limit, const char *what) {
    if ((int64_t)n > limit)
        return ex_trap(ex, "limit", "%s is %llu bytes, limit %lld", what, (unsigned long long)n,
                       (long long)limit);
    return 0;
}

int charge_in(Execution *ex, uint64_t n, const char *reason) {
    return ex_consume(ex, (int64_t)n * ex->host->prices.byte_in, CAT_IO_BYTES, reason);
}

static int charge_out(Execution *ex, uint64_t n, const char *reason) {
    return ex_consume(ex, (int64_t)n * ex->host->prices.byte_out, CAT_IO_BYTES, reason);
}

int write_bytes(Execution *ex, uint64_t dst, PyObject *data, const char *what) {
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
    int known = PyDict_Contains(ex->read_set, key);
    if (known < 0)
        return ex_keep_python_error(ex);
    if (!known) { /* a new read-set entry: within its cap, charged before it is fetched */
        const Limits *l = &ex->host->limits;
        if (PyDict_GET_SIZE(ex->read_set) >= l->max_read_entries)
            return ex_trap(ex, "limit", "wes.storage_read: over %lld distinct keys read "
                           "(max_read_entries)", (long long)l->max_read_entries);
        if (ex_consume(ex, ex->host->prices.storage_read_key, CAT_STORAGE_READ,
                       "wes.storage_read") < 0)
            return -1;
    }
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

/* Read a job's declared keys (a tuple of bytes, validated by Job) before its contract runs:
 * each a read of the state, charged and joining the read set as one. */
PyObject *ex_read_declared(Execution *ex, PyObject *keys) {
    if (!PyTuple_Check(keys))
        return PyErr_Format(PyExc_TypeError, "read_declared(keys): keys must be a tuple");
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys); i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i), *value = NULL;
        if (!PyBytes_Check(key))
            return PyErr_Format(PyExc_TypeError, "read_declared(keys): keys must be bytes");
        if (storage_get(ex, key, &value) < 0)
            return ex_raise_pending(ex);
        Py_XDECREF(value);
    }
    Py_RETURN_NONE;
}

/* Buffer a write (value NULL: a removal) within the write set's caps; steals nothing. */
static int buffer_write(Execution *ex, PyObject *key, PyObject *value, const char *what) {
    const Limits *l = &ex->host->limits;
    int64_t grown = PyBytes_GET_SIZE(key) + (value ? PyBytes_GET_SIZE(value) : 0);
    PyObject *old = PyDict_GetItemWithError(ex->writes, key);
    if (old != NULL)
        grown -= PyBytes_GET_SIZE(key) + (old == Py_None ? 0 : PyBytes_GET_SIZE(old));
    else if (PyErr_Occurred())
        return ex_keep_python_error(ex);
    else if (PyDict_GET_SIZE(ex->writes) >= l->max_write_entries)
        return ex_trap(ex, "limit", "%s: over %lld keys written (max_write_entries)", what,
                       (long long)l->max_write_entries);
    if (ex->write_bytes + grown > l->max_write_bytes)
        return ex_trap(ex, "limit", "%s: over %lld bytes written (max_write_bytes)", what,
                       (long long)l->max_write_bytes);
    if (PyDict_SetItem(ex->writes, key, value ? value : Py_None) < 0)
        return ex_keep_python_error(ex);
    ex->write_bytes += grown;
    return 0;
}

static int hash(Execution *ex, Args a, PyObject *digest_fn, const char *reason,
                const char *what) {
    const Prices *p = &ex->host->prices;
    if (ex_consume(ex, p->hash + (int64_t)a[4] * p->hash_byte, CAT_HASHING, reason) < 0)
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

int wes_input_size(Execution *ex, Args a, uint64_t *r) {
    *r = (uint64_t)PyBytes_GET_SIZE(ex->input);
    return 0;
}

int wes_input_read(Execution *ex, Args a, uint64_t *r) {
    if (charge_in(ex, (uint64_t)PyBytes_GET_SIZE(ex->input), "wes.input_read") < 0)
        return -1;
    return write_bytes(ex, a[0], ex->input, "input_read");
}

int wes_return_data(Execution *ex, Args a, uint64_t *r) {
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

int wes_revert(Execution *ex, Args a, uint64_t *r) {
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

int wes_log_line(Execution *ex, Args a, uint64_t *r) {
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

int wes_emit_event(Execution *ex, Args a, uint64_t *r) {
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

int wes_storage_read(Execution *ex, Args a, uint64_t *r) {
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

int wes_storage_write(Execution *ex, Args a, uint64_t *r) {
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
    int rc = value == NULL ? -1 : buffer_write(ex, key, value, "wes.storage_write");
    Py_DECREF(key);
    Py_XDECREF(value);
    return rc;
}

int wes_storage_remove(Execution *ex, Args a, uint64_t *r) {
    const Prices *p = &ex->host->prices;
    if (check_len(ex, a[4], ex->host->limits.max_key_bytes, "wes.storage_remove: key") < 0 ||
        ex_consume(ex, p->storage_write + (int64_t)a[4] * p->storage_write_byte,
                   CAT_STORAGE_WRITE, "wes.storage_remove") < 0)
        return -1;
    PyObject *key = ex_read(ex, a[0], a[4], "storage_remove");
    if (key == NULL)
        return -1;
    int rc = buffer_write(ex, key, NULL, "wes.storage_remove");
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

int wes_caller(Execution *ex, Args a, uint64_t *r) {
    return copy_out(ex, a[0], ex->caller, "wes.caller", "caller", r);
}

int wes_self_address(Execution *ex, Args a, uint64_t *r) {
    return copy_out(ex, a[0], ex->address, "wes.self_address", "self_address", r);
}

int wes_block_height(Execution *ex, Args a, uint64_t *r) {
    *r = ex->block_height;
    return 0;
}

int wes_block_time(Execution *ex, Args a, uint64_t *r) {
    *r = ex->block_time;
    return 0;
}

int wes_fee_left(Execution *ex, Args a, uint64_t *r) {
    *r = (uint64_t)(ex->limit - ex->used);
    return 0;
}

int wes_sha256(Execution *ex, Args a, uint64_t *r) {
    return hash(ex, a, ex->host->callbacks[CB_SHA256], "wes.sha256", "sha256");
}

int wes_keccak256(Execution *ex, Args a, uint64_t *r) {
    return hash(ex, a, ex->host->callbacks[CB_KECCAK256], "wes.keccak256", "keccak256");
}

/* The instrumentation's memory.grow (engine/instrument.py): new pages are charged before
 * they exist; past the module's maximum (within the limit) nothing grows and nothing is
 * charged. */
int wes_memory_grow(Execution *ex, Args a, uint64_t *r) {
    uint64_t delta = a[0], pages = wt.memory_data_size(ex->ctx, ex->memory) / 65536u;
    if (pages + delta > (uint64_t)ex->max_pages) {
        *r = 0xFFFFFFFFu;
        return 0;
    }
    if (ex_charge_growth(ex, (pages + delta) * 65536u) < 0)
        return -1;
    uint64_t previous = 0;
    void *err = wt.memory_grow(ex->ctx, ex->memory, delta, &previous);
    if (err != NULL) {
        wt.error_delete(err);
        return ex_internal(ex, "memory.grow failed within the limit");
    }
    ex->mem_size = wt.memory_data_size(ex->ctx, ex->memory);
    *r = previous;
    return 0;
}
