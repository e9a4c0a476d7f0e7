/*
 * escrow: a WES ABI 1.1 example contract (freestanding C, ../sdk/wes.h) that holds the
 * example token for its depositors and pays it out on their word, by calling the token
 * contract (deployed at the address "token").
 *
 * A depositor first sends tokens to this contract's address with an ordinary
 * `token.transfer`, then calls `deposit`: the escrow asks the token for its own balance
 * and credits the caller with what arrived since it last looked. `release` pays a payee
 * from the caller's credit with `token.transfer` (the token sees the escrow as the
 * sender); if the token refuses, everything reverts.
 *
 * Entry points (all () -> ()):
 *   deposit     input ignored. return_data = the caller's credit (u64 LE).
 *   release     input = amount (u64 LE) || payee (1..64 bytes). return_data = the credit
 *               left. Reverts "insufficient credit" or "token transfer failed".
 *   credit_of   input = account. return_data = its credit (u64 LE). Read only.
 * Events: "deposit" (data = caller || amount), "release" (data = payee || amount).
 * Storage: "c:" + account -> u64 credit; "held" -> u64 the credits' sum.
 */
#include "../sdk/wes.h"

#define AMOUNT 8

static wes_u8 input[AMOUNT + WES_MAX_ADDRESS];
static wes_u8 who[WES_MAX_ADDRESS];
static wes_u8 self[WES_MAX_ADDRESS];
static wes_u8 key[2 + WES_MAX_ADDRESS];
static wes_u8 word[AMOUNT];
static wes_u8 call_in[AMOUNT + WES_MAX_ADDRESS];
static wes_u8 event[WES_MAX_ADDRESS + AMOUNT];

static const wes_u8 TOKEN[] = "token";
static const wes_u8 HELD[] = "held";

static wes_u64 load_u64(const wes_u8 *p) {
    wes_u64 v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void store_u64(wes_u8 *p, wes_u64 v) {
    for (int i = 0; i < 8; i++) p[i] = (wes_u8)(v >> (8 * i));
}

static wes_u64 read_u64(const wes_u8 *k, wes_u32 k_len) {
    for (int i = 0; i < AMOUNT; i++) word[i] = 0;
    wes_storage_read(k, (wes_i32)k_len, word, AMOUNT);
    return load_u64(word);
}

static void write_u64(const wes_u8 *k, wes_u32 k_len, wes_u64 v) {
    store_u64(word, v);
    wes_storage_write(k, (wes_i32)k_len, word, AMOUNT);
}

/* "c:" + account into key; returns its length. */
static wes_u32 credit_key(const wes_u8 *account, wes_u32 n) {
    key[0] = 'c';
    key[1] = ':';
    wes_copy(key + 2, account, n);
    return 2 + n;
}

/* Call token.fn with call_in[0..len): the call status; the result in `word` (8 bytes). */
static wes_i32 token(const char *fn, wes_u32 len) {
    wes_i32 status = wes_call(TOKEN, (wes_i32)wes_strlen((const char *)TOKEN), (const wes_u8 *)fn,
                              (wes_i32)wes_strlen(fn), call_in, (wes_i32)len, 0);
    for (int i = 0; i < AMOUNT; i++) word[i] = 0;
    if (status == WES_CALL_OK && wes_result_size() == AMOUNT) wes_result_read(word);
    return status;
}

WES_ENTRY(deposit) {
    wes_u32 me = (wes_u32)wes_self_address(self);
    wes_copy(call_in, self, me);
    if (token("balance_of", me) != WES_CALL_OK) wes_fail("token balance_of failed");
    wes_u64 balance = load_u64(word);
    wes_u64 held = read_u64(HELD, wes_strlen((const char *)HELD));
    wes_u64 arrived = balance > held ? balance - held : 0;
    wes_u32 n = (wes_u32)wes_caller(who);
    wes_u32 k = credit_key(who, n);
    wes_u64 credit = read_u64(key, k) + arrived;
    write_u64(key, k, credit);
    write_u64(HELD, wes_strlen((const char *)HELD), held + arrived);
    wes_copy(event, who, n);
    store_u64(event + n, arrived);
    wes_emit_event((const wes_u8 *)"deposit", 7, event, (wes_i32)(n + AMOUNT));
    store_u64(word, credit);
    wes_return_data(word, AMOUNT);
}

WES_ENTRY(release) {
    wes_i32 size = wes_input_size();
    if (size <= AMOUNT || size > AMOUNT + WES_MAX_ADDRESS) wes_fail("input: amount || payee");
    wes_input_read(input);
    wes_u64 amount = load_u64(input);
    wes_u32 payee_len = (wes_u32)size - AMOUNT;
    wes_u32 n = (wes_u32)wes_caller(who);
    wes_u32 k = credit_key(who, n);
    wes_u64 credit = read_u64(key, k);
    if (amount > credit) wes_fail("insufficient credit");
    wes_copy(call_in, input, (wes_u32)size);
    if (token("transfer", (wes_u32)size) != WES_CALL_OK) wes_fail("token transfer failed");
    k = credit_key(who, n);
    write_u64(key, k, credit - amount);
    wes_u64 held = read_u64(HELD, wes_strlen((const char *)HELD));
    write_u64(HELD, wes_strlen((const char *)HELD), held - amount);
    wes_copy(event, input + AMOUNT, payee_len);
    store_u64(event + payee_len, amount);
    wes_emit_event((const wes_u8 *)"release", 7, event, (wes_i32)(payee_len + AMOUNT));
    store_u64(word, credit - amount);
    wes_return_data(word, AMOUNT);
}

WES_ENTRY(credit_of) {
    wes_i32 n = wes_input_size();
    if (n < 1 || n > WES_MAX_ADDRESS) wes_fail("input: account");
    wes_input_read(input);
    store_u64(word, read_u64(key, credit_key(input, (wes_u32)n)));
    wes_return_data(word, AMOUNT);
}
