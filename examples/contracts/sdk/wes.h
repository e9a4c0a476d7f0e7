/*
 * wes.h: the WES contract ABI (docs/ABI.md) for freestanding C on wasm32.
 *
 * Every host function of module "wes", with the ABI's types: pointers and lengths are
 * offsets into the contract's own memory. Build with
 *   clang --target=wasm32 -mcpu=mvp -nostdlib -ffreestanding -Wl,--no-entry ...
 * (examples/contracts/build.sh has the full line). Only the functions a contract calls
 * become imports, so declaring them all costs nothing.
 */
#ifndef WES_H
#define WES_H

typedef unsigned char wes_u8;
typedef int wes_i32;
typedef unsigned int wes_u32;
typedef long long wes_i64;
typedef unsigned long long wes_u64;

#define WES_IMPORT(name) __attribute__((import_module("wes"), import_name(#name)))
/* An entry point: an exported () -> () function named `name`. */
#define WES_ENTRY(name) __attribute__((export_name(#name))) void name(void)

/* Sizes the ABI fixes. */
#define WES_MAX_ADDRESS 64
#define WES_MAX_KEY 256
#define WES_HASH_BYTES 32
#define WES_ED25519_SIGNATURE 64
#define WES_ED25519_KEY 32
#define WES_SECP256K1_SIGNATURE 64 /* r || s, big-endian, low s */
#define WES_SECP256K1_COMPRESSED 33
#define WES_SECP256K1_UNCOMPRESSED 65
#define WES_ABSENT (-1) /* storage_read of a key that is not there */

/* Call statuses (ABI 1.1). */
enum { WES_CALL_OK, WES_CALL_REVERTED, WES_CALL_OUT_OF_FEE, WES_CALL_TRAPPED,
       WES_CALL_NOT_FOUND, WES_CALL_DENIED };

/* -- input and output ---------------------------------------------------------------- */
WES_IMPORT(input_size) wes_i32 wes_input_size(void);
WES_IMPORT(input_read) void wes_input_read(wes_u8 *dst);
WES_IMPORT(return_data) void wes_return_data(const wes_u8 *ptr, wes_i32 len);
/* Ends the execution with status `reverted`: writes and events are dropped. */
WES_IMPORT(revert) __attribute__((noreturn)) void wes_revert(const wes_u8 *ptr, wes_i32 len);
WES_IMPORT(log) void wes_log(const wes_u8 *ptr, wes_i32 len);
WES_IMPORT(emit_event)
void wes_emit_event(const wes_u8 *topic, wes_i32 topic_len, const wes_u8 *data, wes_i32 data_len);

/* -- state: this contract's own keys --------------------------------------------------- */
/* The value's length (copies at most dst_cap bytes), or WES_ABSENT. */
WES_IMPORT(storage_read)
wes_i32 wes_storage_read(const wes_u8 *key, wes_i32 key_len, wes_u8 *dst, wes_i32 dst_cap);
WES_IMPORT(storage_write)
void wes_storage_write(const wes_u8 *key, wes_i32 key_len, const wes_u8 *val, wes_i32 val_len);
WES_IMPORT(storage_remove) void wes_storage_remove(const wes_u8 *key, wes_i32 key_len);

/* -- context --------------------------------------------------------------------------- */
/* Write the address to dst (room for WES_MAX_ADDRESS bytes); return its length. */
WES_IMPORT(caller) wes_i32 wes_caller(wes_u8 *dst);
WES_IMPORT(self_address) wes_i32 wes_self_address(wes_u8 *dst);
WES_IMPORT(block_height) wes_i64 wes_block_height(void);
WES_IMPORT(block_time) wes_i64 wes_block_time(void); /* Unix milliseconds */
WES_IMPORT(fee_left) wes_i64 wes_fee_left(void);

/* -- crypto ------------------------------------------------------------------------------ */
WES_IMPORT(sha256) void wes_sha256(const wes_u8 *ptr, wes_i32 len, wes_u8 *dst32);
WES_IMPORT(keccak256) void wes_keccak256(const wes_u8 *ptr, wes_i32 len, wes_u8 *dst32);
/* 1 if valid, else 0 (ABI 1.1). */
WES_IMPORT(ed25519_verify)
wes_i32 wes_ed25519_verify(const wes_u8 *sig64, const wes_u8 *msg, wes_i32 msg_len,
                           const wes_u8 *pk32);
WES_IMPORT(secp256k1_verify)
wes_i32 wes_secp256k1_verify(const wes_u8 *hash32, const wes_u8 *sig64, const wes_u8 *pk,
                             wes_i32 pk_len);
/* On success writes the 65-byte uncompressed key (04 || x || y) to dst and returns 1. */
WES_IMPORT(secp256k1_recover)
wes_i32 wes_secp256k1_recover(const wes_u8 *hash32, const wes_u8 *sig64, wes_i32 recid,
                              wes_u8 *dst65);

/* -- cross-contract calls (ABI 1.1): a WES_CALL_* status; the result via result_read ---- */
WES_IMPORT(call)
wes_i32 wes_call(const wes_u8 *addr, wes_i32 addr_len, const wes_u8 *fn, wes_i32 fn_len,
                 const wes_u8 *input, wes_i32 input_len, wes_i64 fee);
WES_IMPORT(result_size) wes_i32 wes_result_size(void);
WES_IMPORT(result_read) void wes_result_read(wes_u8 *dst);

/* -- small helpers for freestanding contracts (no libc) -------------------------------- */
static inline wes_u32 wes_strlen(const char *s) {
    wes_u32 n = 0;
    while (s[n]) n++;
    return n;
}

/* Revert with a C string as the message (never returns). */
__attribute__((noreturn)) static inline void wes_fail(const char *why) {
    wes_revert((const wes_u8 *)why, (wes_i32)wes_strlen(why));
}

static inline void wes_copy(wes_u8 *dst, const wes_u8 *src, wes_u32 n) {
    for (wes_u32 i = 0; i < n; i++) dst[i] = src[i];
}

#endif
