/*
 * token: a WES ABI 1 example contract (a demo fungible token), freestanding C.
 *
 * Storage (all amounts u64, 8 bytes little-endian; an absent key reads as 0):
 *   "bal:" + account bytes   balance of that account (account = 1..64 bytes)
 *   "supply"                 total supply
 *
 * Entry points (all () -> ()); see README.md for the exact formats:
 *   mint          input = amount(8) [+ recipient(1..64)]; recipient defaults to
 *                 the caller. return_data = recipient's new balance.
 *   transfer      input = amount(8) + recipient(1..64). return_data = caller's
 *                 new balance. Event "transfer": caller_len(1) + caller +
 *                 recipient + amount(8).
 *   balance_of    input = account(1..64). return_data = balance. Read only.
 *   total_supply  input ignored. return_data = supply. Read only.
 *
 * Build: see ../build.sh (clang --target=wasm32 -nostdlib, wasm-ld).
 * No libc, no undefined symbols: every import is declared below with
 * import_module("wes"), so a stray libc call fails at link time instead of
 * becoming an "env" import.
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;

#define WES(name) __attribute__((import_module("wes"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

WES(input_size) i32 wes_input_size(void);
WES(input_read) void wes_input_read(u8 *dst);
WES(return_data) void wes_return_data(const u8 *ptr, i32 len);
WES(revert) void wes_revert(const u8 *ptr, i32 len);
WES(emit_event) void wes_emit_event(const u8 *topic, i32 topic_len, const u8 *data, i32 data_len);
WES(storage_read) i32 wes_storage_read(const u8 *key, i32 key_len, u8 *dst, i32 dst_cap);
WES(storage_write) void wes_storage_write(const u8 *key, i32 key_len, const u8 *val, i32 val_len);
WES(caller) i32 wes_caller(u8 *dst);

#define MAX_ADDR 64
#define AMOUNT_LEN 8
#define MAX_INPUT (AMOUNT_LEN + MAX_ADDR)

static u8 input_buf[MAX_INPUT];
static u8 caller_buf[MAX_ADDR];
static u8 key_buf[4 + MAX_ADDR];
static u8 val_buf[8];
static u8 event_buf[1 + MAX_ADDR + MAX_ADDR + AMOUNT_LEN];

static const u8 SUPPLY_KEY[] = "supply";
static const u8 TRANSFER_TOPIC[] = "transfer";

static u32 cstrlen(const char *s) {
    u32 n = 0;
    while (s[n]) n++;
    return n;
}

/* revert never returns (the host stops the execution); trap if it somehow does. */
__attribute__((noreturn)) static void fail(const char *msg) {
    wes_revert((const u8 *)msg, (i32)cstrlen(msg));
    __builtin_trap();
}

static void copy(u8 *dst, const u8 *src, u32 n) {
    /* -fno-builtin keeps clang from turning this loop into a memcpy call */
    for (u32 i = 0; i < n; i++) dst[i] = src[i];
}

static int same(const u8 *a, u32 alen, const u8 *b, u32 blen) {
    if (alen != blen) return 0;
    for (u32 i = 0; i < alen; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static u64 get_u64(const u8 *p) {
    u64 v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void put_u64(u8 *p, u64 v) {
    for (int i = 0; i < 8; i++) { p[i] = (u8)v; v >>= 8; }
}

/* Read the whole input into input_buf; revert when it is longer than max. */
static u32 read_input(u32 max, const char *too_long) {
    i32 n = wes_input_size();
    if (n < 0 || (u32)n > max) fail(too_long);
    if (n > 0) wes_input_read(input_buf);
    return (u32)n;
}

/* Read a u64 value; absent = 0; a shorter stored value is zero-extended. */
static u64 read_u64(const u8 *key, u32 key_len) {
    put_u64(val_buf, 0);
    wes_storage_read(key, (i32)key_len, val_buf, 8);
    return get_u64(val_buf);
}

static void write_u64(const u8 *key, u32 key_len, u64 v) {
    put_u64(val_buf, v);
    wes_storage_write(key, (i32)key_len, val_buf, 8);
}

/* key_buf = "bal:" + account; returns the key length. */
static u32 balance_key(const u8 *acct, u32 len) {
    key_buf[0] = 'b'; key_buf[1] = 'a'; key_buf[2] = 'l'; key_buf[3] = ':';
    copy(key_buf + 4, acct, len);
    return 4 + len;
}

static u64 balance_get(const u8 *acct, u32 len) {
    u32 k = balance_key(acct, len);
    return read_u64(key_buf, k);
}

static void balance_set(const u8 *acct, u32 len, u64 v) {
    u32 k = balance_key(acct, len);
    write_u64(key_buf, k, v);
}

static void return_u64(u64 v) {
    put_u64(val_buf, v);
    wes_return_data(val_buf, 8);
}

static u32 get_caller(void) {
    i32 n = wes_caller(caller_buf);
    if (n <= 0 || n > MAX_ADDR) fail("bad caller: address must be 1..64 bytes");
    return (u32)n;
}

EXPORT(mint) void mint(void) {
    static const char bad[] = "bad input: mint needs 8-byte amount + optional recipient (1..64 bytes)";
    u32 n = read_input(MAX_INPUT, bad);
    if (n < AMOUNT_LEN) fail(bad);
    u64 amount = get_u64(input_buf);
    const u8 *to;
    u32 to_len;
    if (n > AMOUNT_LEN) {
        to = input_buf + AMOUNT_LEN;
        to_len = n - AMOUNT_LEN;
    } else {
        to_len = get_caller();
        to = caller_buf;
    }
    u64 supply = read_u64(SUPPLY_KEY, 6);
    u64 bal = balance_get(to, to_len);
    if (supply + amount < supply || bal + amount < bal) fail("overflow: mint would exceed u64");
    bal += amount;
    balance_set(to, to_len, bal);
    write_u64(SUPPLY_KEY, 6, supply + amount);
    return_u64(bal);
}

EXPORT(transfer) void transfer(void) {
    static const char bad[] = "bad input: transfer needs 8-byte amount + recipient (1..64 bytes)";
    u32 n = read_input(MAX_INPUT, bad);
    if (n <= AMOUNT_LEN) fail(bad);
    u64 amount = get_u64(input_buf);
    const u8 *to = input_buf + AMOUNT_LEN;
    u32 to_len = n - AMOUNT_LEN;
    u32 from_len = get_caller();
    const u8 *from = caller_buf;

    u64 from_bal = balance_get(from, from_len);
    if (from_bal < amount) fail("insufficient funds");
    u64 new_from = from_bal;
    if (!same(from, from_len, to, to_len)) {
        u64 to_bal = balance_get(to, to_len);
        if (to_bal + amount < to_bal) fail("overflow: recipient balance would exceed u64");
        new_from = from_bal - amount;
        balance_set(from, from_len, new_from);
        balance_set(to, to_len, to_bal + amount);
    }

    /* event data: caller_len(1) + caller + recipient + amount(8 LE) */
    u32 e = 0;
    event_buf[e++] = (u8)from_len;
    copy(event_buf + e, from, from_len); e += from_len;
    copy(event_buf + e, to, to_len); e += to_len;
    put_u64(event_buf + e, amount); e += 8;
    wes_emit_event(TRANSFER_TOPIC, 8, event_buf, (i32)e);

    return_u64(new_from);
}

EXPORT(balance_of) void balance_of(void) {
    static const char bad[] = "bad input: balance_of needs an account address (1..64 bytes)";
    u32 n = read_input(MAX_ADDR, bad);
    if (n == 0) fail(bad);
    return_u64(balance_get(input_buf, n));
}

EXPORT(total_supply) void total_supply(void) {
    return_u64(read_u64(SUPPLY_KEY, 6));
}
