/* ABI 1.1's signature functions (engine/host.py is the reference): charge, bounded reads,
 * then the verdict of engine/signatures.py through the Host's callbacks. */

#include "native.h"

/* A verdict from a Python verifier (engine/signatures.py): 1 or 0, never an error of the
 * contract's. Steals `verdict`. */
static int verdict_of(Execution *ex, PyObject *verdict, uint64_t *r) {
    if (verdict == NULL)
        return ex_keep_python_error(ex);
    int truth = PyObject_IsTrue(verdict);
    Py_DECREF(verdict);
    if (truth < 0)
        return ex_keep_python_error(ex);
    *r = (uint64_t)truth;
    return 0;
}

int wes_ed25519_verify(Execution *ex, Args a, uint64_t *r) {
    const Prices *p = &ex->host->prices;
    if (ex_consume(ex, p->ed25519_verify + (int64_t)a[8] * p->ed25519_byte, CAT_SIGNATURES,
                   "wes.ed25519_verify") < 0)
        return -1;
    PyObject *sig = ex_read(ex, a[0], 64, "ed25519_verify");
    PyObject *msg = sig ? ex_read(ex, a[4], a[8], "ed25519_verify") : NULL;
    PyObject *pk = msg ? ex_read(ex, a[12], 32, "ed25519_verify") : NULL;
    int rc = -1;
    if (pk != NULL)
        rc = verdict_of(ex, PyObject_CallFunctionObjArgs(ex->host->callbacks[CB_ED25519_VERIFY],
                                                         sig, msg, pk, NULL), r);
    Py_XDECREF(sig);
    Py_XDECREF(msg);
    Py_XDECREF(pk);
    return rc;
}

/* The shared first steps of the secp256k1 functions: charge, then read the 32-byte hash
 * at a[0] and the 64-byte signature at a[4] (new references, or -1 with both NULL). */
static int charged_hash_and_sig(Execution *ex, Args a, int64_t price, const char *reason,
                                const char *what, PyObject **digest, PyObject **sig) {
    *digest = *sig = NULL;
    if (ex_consume(ex, price, CAT_SIGNATURES, reason) < 0)
        return -1;
    *digest = ex_read(ex, a[0], 32, what);
    *sig = *digest ? ex_read(ex, a[4], 64, what) : NULL;
    if (*sig == NULL) {
        Py_CLEAR(*digest);
        return -1;
    }
    return 0;
}

int wes_secp256k1_verify(Execution *ex, Args a, uint64_t *r) {
    PyObject *digest, *sig;
    if (charged_hash_and_sig(ex, a, ex->host->prices.secp256k1_verify, "wes.secp256k1_verify",
                             "secp256k1_verify", &digest, &sig) < 0)
        return -1;
    uint64_t pk_len = a[12];
    int rc = 0;
    *r = 0;
    if (pk_len == 33 || pk_len == 65) { /* else no key of that length: read no more */
        PyObject *pk = ex_read(ex, a[8], pk_len, "secp256k1_verify");
        rc = pk == NULL ? -1 : verdict_of(ex, PyObject_CallFunctionObjArgs(
            ex->host->callbacks[CB_SECP256K1_VERIFY], digest, sig, pk, NULL), r);
        Py_XDECREF(pk);
    }
    Py_DECREF(digest);
    Py_DECREF(sig);
    return rc;
}

int wes_secp256k1_recover(Execution *ex, Args a, uint64_t *r) {
    PyObject *digest, *sig;
    if (charged_hash_and_sig(ex, a, ex->host->prices.secp256k1_recover,
                             "wes.secp256k1_recover", "secp256k1_recover", &digest, &sig) < 0)
        return -1;
    PyObject *key = PyObject_CallFunction(ex->host->callbacks[CB_SECP256K1_RECOVER], "OOk",
                                          digest, sig, (unsigned long)a[8]);
    int rc;
    *r = 0;
    if (key == NULL) {
        rc = ex_keep_python_error(ex);
    } else if (key == Py_None) {
        rc = 0;
    } else if (PyBytes_Check(key)) {
        rc = write_bytes(ex, a[12], key, "secp256k1_recover");
        *r = 1;
    } else {
        rc = ex_internal(ex, "secp256k1_recover returned neither bytes nor None");
    }
    Py_XDECREF(key);
    Py_DECREF(digest);
    Py_DECREF(sig);
    return rc;
}
