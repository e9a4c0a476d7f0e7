/*
 * notary: a WES ABI 1.1 example contract (freestanding C, ../sdk/wes.h) that keeps
 * one signed message per key holder, for three kinds of keys.
 *
 * A holder is an id: "ed:" + Ed25519 key (32 bytes), "k1:" + compressed secp256k1 key
 * (33 bytes), or "eth:" + Ethereum address (20 bytes, recovered from the signature).
 * What a holder signs is  payload = self_address || nonce (u64 LE) || message,  where
 * nonce counts the holder's posts so far: a signature is good for one post, on this
 * contract only (no replay).
 *
 * Entry points (all () -> ()):
 *   post_ed25519    input = key(32) || sig(64) || message     signs the payload itself
 *   post_secp256k1  input = key(33) || sig(64) || message     signs sha256(payload)
 *   post_eth        input = sig(64) || recid(1) || nonce(8) || message   signs
 *                   keccak256(payload) with the nonce it states (the signer's address,
 *                   and so its nonce, is known only after recovery);
 *                   return_data = the 20-byte address that signed
 *   nonce           input = id. return_data = u64 LE posts so far. Read only.
 *   message         input = id. return_data = the last message (empty if none). Read only.
 * A post stores the message (at most 1,024 bytes), counts the nonce up and emits
 * event "posted" with data = id. A bad signature reverts with "bad signature".
 *
 * Storage: "n:" + id -> u64 nonce, "m:" + id -> message.
 */
#include "../sdk/wes.h"

#define MAX_MESSAGE 1024
#define MAX_ID 40
#define MAX_INPUT (WES_SECP256K1_COMPRESSED + WES_SECP256K1_SIGNATURE + MAX_MESSAGE)

static wes_u8 input[MAX_INPUT];
static wes_u8 payload[WES_MAX_ADDRESS + 8 + MAX_MESSAGE];
static wes_u8 id[MAX_ID];
static wes_u8 key[2 + MAX_ID];
static wes_u8 word[8];
static wes_u8 digest[WES_HASH_BYTES];
static wes_u8 recovered[WES_SECP256K1_UNCOMPRESSED];

static const wes_u8 POSTED[] = "posted";

/* The input, which must hold at least `fixed` bytes and at most MAX_MESSAGE more;
 * returns the length of what follows the fixed part. */
static wes_u32 read_input(wes_u32 fixed) {
    wes_i32 n = wes_input_size();
    if (n < (wes_i32)fixed) wes_fail("input too short");
    if (n > (wes_i32)(fixed + MAX_MESSAGE)) wes_fail("message too long");
    wes_input_read(input);
    return (wes_u32)n - fixed;
}

/* "<prefix>" + id into key; returns its length. */
static wes_u32 slot(char prefix, wes_u32 id_len) {
    key[0] = (wes_u8)prefix;
    key[1] = ':';
    wes_copy(key + 2, id, id_len);
    return 2 + id_len;
}

static wes_u64 load_nonce(wes_u32 id_len) {
    for (int i = 0; i < 8; i++) word[i] = 0;
    wes_storage_read(key, (wes_i32)slot('n', id_len), word, 8);
    wes_u64 v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | word[i];
    return v;
}

/* payload = self_address || nonce || message; returns its length. */
static wes_u32 build_payload(wes_u32 id_len, const wes_u8 *message, wes_u32 message_len) {
    wes_u32 n = (wes_u32)wes_self_address(payload);
    wes_u64 nonce = load_nonce(id_len);
    for (int i = 0; i < 8; i++) payload[n + i] = (wes_u8)(nonce >> (8 * i));
    wes_copy(payload + n + 8, message, message_len);
    return n + 8 + message_len;
}

static void post(wes_u32 id_len, const wes_u8 *message, wes_u32 message_len) {
    wes_u64 nonce = load_nonce(id_len) + 1;
    for (int i = 0; i < 8; i++) word[i] = (wes_u8)(nonce >> (8 * i));
    wes_storage_write(key, (wes_i32)slot('n', id_len), word, 8);
    wes_storage_write(key, (wes_i32)slot('m', id_len), message, (wes_i32)message_len);
    wes_emit_event(POSTED, (wes_i32)wes_strlen((const char *)POSTED), id, (wes_i32)id_len);
}

/* id = prefix + bytes */
static wes_u32 make_id(const char *prefix, const wes_u8 *bytes, wes_u32 n) {
    wes_u32 p = wes_strlen(prefix);
    wes_copy(id, (const wes_u8 *)prefix, p);
    wes_copy(id + p, bytes, n);
    return p + n;
}

WES_ENTRY(post_ed25519) {
    const wes_u32 fixed = WES_ED25519_KEY + WES_ED25519_SIGNATURE;
    wes_u32 message_len = read_input(fixed);
    const wes_u8 *pk = input, *sig = input + WES_ED25519_KEY, *message = input + fixed;
    wes_u32 id_len = make_id("ed:", pk, WES_ED25519_KEY);
    wes_u32 n = build_payload(id_len, message, message_len);
    if (!wes_ed25519_verify(sig, payload, (wes_i32)n, pk)) wes_fail("bad signature");
    post(id_len, message, message_len);
}

WES_ENTRY(post_secp256k1) {
    const wes_u32 fixed = WES_SECP256K1_COMPRESSED + WES_SECP256K1_SIGNATURE;
    wes_u32 message_len = read_input(fixed);
    const wes_u8 *pk = input, *sig = input + WES_SECP256K1_COMPRESSED, *message = input + fixed;
    wes_u32 id_len = make_id("k1:", pk, WES_SECP256K1_COMPRESSED);
    wes_sha256(payload, (wes_i32)build_payload(id_len, message, message_len), digest);
    if (!wes_secp256k1_verify(digest, sig, pk, WES_SECP256K1_COMPRESSED))
        wes_fail("bad signature");
    post(id_len, message, message_len);
}

WES_ENTRY(post_eth) {
    /* The signer's address is known only after recovery, so the signer states the nonce
     * it signed with, and it must be the address's. */
    const wes_u32 fixed = WES_SECP256K1_SIGNATURE + 1 + 8;
    wes_u32 message_len = read_input(fixed);
    const wes_u8 *sig = input, *nonce = input + WES_SECP256K1_SIGNATURE + 1;
    const wes_u8 *message = input + fixed;
    wes_u32 n = (wes_u32)wes_self_address(payload);
    wes_copy(payload + n, nonce, 8);
    wes_copy(payload + n + 8, message, message_len);
    wes_keccak256(payload, (wes_i32)(n + 8 + message_len), digest);
    if (!wes_secp256k1_recover(digest, sig, input[WES_SECP256K1_SIGNATURE], recovered))
        wes_fail("bad signature");
    /* the address: the last 20 bytes of keccak256 of the key's 64 bytes after 04 */
    wes_keccak256(recovered + 1, 64, digest);
    wes_u32 id_len = make_id("eth:", digest + 12, 20);
    wes_u64 stated = 0, expected = load_nonce(id_len);
    for (int i = 7; i >= 0; i--) stated = (stated << 8) | nonce[i];
    if (stated != expected) wes_fail("bad signature");
    post(id_len, message, message_len);
    wes_return_data(digest + 12, 20);
}

WES_ENTRY(nonce) {
    wes_i32 n = wes_input_size();
    if (n < 1 || n > MAX_ID) wes_fail("bad id");
    wes_input_read(id);
    wes_u64 v = load_nonce((wes_u32)n);
    for (int i = 0; i < 8; i++) word[i] = (wes_u8)(v >> (8 * i));
    wes_return_data(word, 8);
}

WES_ENTRY(message) {
    wes_i32 n = wes_input_size();
    if (n < 1 || n > MAX_ID) wes_fail("bad id");
    wes_input_read(id);
    wes_i32 len = wes_storage_read(key, (wes_i32)slot('m', (wes_u32)n), input, MAX_MESSAGE);
    wes_return_data(input, len < 0 ? 0 : len);
}
