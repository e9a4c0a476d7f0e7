// wes.ts: the WES contract ABI (docs/ABI.md) for AssemblyScript.
//
// Every host function of module "wes" with the ABI's types; pointers are `usize`
// offsets into the contract's memory. Import what a contract uses:
//   import { input_size, input_read, return_data } from "../../sdk/wes";
// Only the functions a contract calls become imports.

// Sizes the ABI fixes.
export const MAX_ADDRESS: i32 = 64;
export const MAX_KEY: i32 = 256;
export const HASH_BYTES: i32 = 32;
export const ED25519_SIGNATURE: i32 = 64;
export const ED25519_KEY: i32 = 32;
export const SECP256K1_SIGNATURE: i32 = 64; // r || s, big-endian, low s
export const SECP256K1_COMPRESSED: i32 = 33;
export const SECP256K1_UNCOMPRESSED: i32 = 65;
export const ABSENT: i32 = -1; // storage_read of a key that is not there

// Call statuses (ABI 1.1).
export const CALL_OK: i32 = 0;
export const CALL_REVERTED: i32 = 1;
export const CALL_OUT_OF_FEE: i32 = 2;
export const CALL_TRAPPED: i32 = 3;
export const CALL_NOT_FOUND: i32 = 4;
export const CALL_DENIED: i32 = 5;

// -- input and output
@external("wes", "input_size")
export declare function input_size(): i32;
@external("wes", "input_read")
export declare function input_read(dst: usize): void;
@external("wes", "return_data")
export declare function return_data(ptr: usize, len: i32): void;
// Ends the execution with status `reverted`: writes and events are dropped.
@external("wes", "revert")
export declare function revert(ptr: usize, len: i32): void;
@external("wes", "log")
export declare function log(ptr: usize, len: i32): void;
@external("wes", "emit_event")
export declare function emit_event(topic: usize, topic_len: i32, data: usize, data_len: i32): void;

// -- state: this contract's own keys
// The value's length (copies at most dst_cap bytes), or ABSENT.
@external("wes", "storage_read")
export declare function storage_read(key: usize, key_len: i32, dst: usize, dst_cap: i32): i32;
@external("wes", "storage_write")
export declare function storage_write(key: usize, key_len: i32, val: usize, val_len: i32): void;
@external("wes", "storage_remove")
export declare function storage_remove(key: usize, key_len: i32): void;

// -- context
// Write the address to dst (room for MAX_ADDRESS bytes); return its length.
@external("wes", "caller")
export declare function caller(dst: usize): i32;
@external("wes", "self_address")
export declare function self_address(dst: usize): i32;
@external("wes", "block_height")
export declare function block_height(): i64;
@external("wes", "block_time")
export declare function block_time(): i64; // Unix milliseconds
@external("wes", "fee_left")
export declare function fee_left(): i64;

// -- crypto
@external("wes", "sha256")
export declare function sha256(ptr: usize, len: i32, dst32: usize): void;
@external("wes", "keccak256")
export declare function keccak256(ptr: usize, len: i32, dst32: usize): void;
// 1 if valid, else 0 (ABI 1.1).
@external("wes", "ed25519_verify")
export declare function ed25519_verify(sig64: usize, msg: usize, msg_len: i32, pk32: usize): i32;
@external("wes", "secp256k1_verify")
export declare function secp256k1_verify(hash32: usize, sig64: usize, pk: usize, pk_len: i32): i32;
// On success writes the 65-byte uncompressed key (04 || x || y) to dst and returns 1.
@external("wes", "secp256k1_recover")
export declare function secp256k1_recover(hash32: usize, sig64: usize, recid: i32, dst65: usize): i32;

// -- cross-contract calls (ABI 1.1): a CALL_* status; the result via result_read
@external("wes", "call")
export declare function call(addr: usize, addr_len: i32, fn: usize, fn_len: i32,
                             input: usize, input_len: i32, fee: i64): i32;
@external("wes", "result_size")
export declare function result_size(): i32;
@external("wes", "result_read")
export declare function result_read(dst: usize): void;
