/* ABI 1.1's cross-contract calls (engine/host.py is the reference; engine/calls.py runs
 * the callee's frame through the Host's callback). */

#include "native.h"

/* wes.call (engine/calls.py does the frame): charge, bounded reads, the call through the
 * engine's callback, then cap the caller's fuel at what is left (the callee's fee was
 * charged here: wasm may not run past it). */
#define MAX_ADDRESS_BYTES 64  /* engine/model.py's */
#define MAX_FUNCTION_BYTES 128

int wes_call(Execution *ex, Args a, uint64_t *r) {
    uint64_t addr_len = a[4], fn_len = a[12], in_len = a[20];
    int64_t fee = (int64_t)((uint64_t)a[24] | ((uint64_t)a[25] << 32));
    const Prices *p = &ex->host->prices;
    if (check_len(ex, addr_len, MAX_ADDRESS_BYTES, "wes.call: address") < 0 ||
        check_len(ex, fn_len, MAX_FUNCTION_BYTES, "wes.call: function name") < 0 ||
        check_len(ex, in_len, ex->host->limits.max_input_bytes, "wes.call: input") < 0 ||
        ex_consume(ex, p->call + (int64_t)(addr_len + fn_len + in_len) * p->call_byte,
                   CAT_CALLS, "wes.call") < 0)
        return -1;
    PyObject *addr = ex_read(ex, a[0], addr_len, "call");
    PyObject *fn = addr ? ex_read(ex, a[8], fn_len, "call") : NULL;
    PyObject *input = fn ? ex_read(ex, a[16], in_len, "call") : NULL;
    int rc = -1;
    if (input != NULL) {
        PyObject *out = PyObject_CallFunction(ex->host->callbacks[CB_CALL], "OOOOL", (PyObject *)ex,
                                              addr, fn, input, (long long)fee);
        if (out == NULL) {
            rc = ex_keep_python_error(ex);
        } else if (!PyTuple_Check(out) || PyTuple_GET_SIZE(out) != 2 ||
                   !PyLong_Check(PyTuple_GET_ITEM(out, 0)) ||
                   !PyBytes_Check(PyTuple_GET_ITEM(out, 1))) {
            rc = ex_internal(ex, "the call callback returned no (status, bytes)");
        } else {
            *r = (uint64_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(out, 0));
            PyObject *result = PyTuple_GET_ITEM(out, 1);
            Py_INCREF(result);
            Py_XSETREF(ex->last_result, result);
            rc = 0;
        }
        Py_XDECREF(out);
    }
    Py_XDECREF(addr);
    Py_XDECREF(fn);
    Py_XDECREF(input);
    if (rc < 0)
        return rc;
    uint64_t left;
    void *err = wt.get_fuel(ex->ctx, &left);
    if (err != NULL) {
        wt.error_delete(err);
        return ex_internal(ex, "wasmtime refused get_fuel");
    }
    uint64_t cap = ex_fuel_cap(ex);
    if (left > cap) {
        err = wt.set_fuel(ex->ctx, cap);
        if (err != NULL) {
            wt.error_delete(err);
            return ex_internal(ex, "wasmtime refused set_fuel");
        }
        left = cap;
    }
    ex->fuel_granted = left;
    return 0;
}

int wes_result_size(Execution *ex, Args a, uint64_t *r) {
    *r = (uint64_t)PyBytes_GET_SIZE(ex->last_result);
    return 0;
}

int wes_result_read(Execution *ex, Args a, uint64_t *r) {
    if (charge_in(ex, (uint64_t)PyBytes_GET_SIZE(ex->last_result), "wes.result_read") < 0)
        return -1;
    return write_bytes(ex, a[0], ex->last_result, "result_read");
}
