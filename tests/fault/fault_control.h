/* Control API of the fault-injection PKCS#11 module (tests/fault/fault_pkcs11.cpp).
 *
 * The module (libmqsec_fault_pkcs11.so) forwards every Cryptoki call to a real module (env
 * MQSEC_FAULT_TARGET, default /usr/lib/softhsm/libsofthsm2.so) and lets a test make chosen
 * calls fail and simulate pulling out and re-inserting the token. A test that loaded the
 * module (e.g. through mqsec::pkcs11::Module::load) reaches these functions with
 * dlopen(<same path>, RTLD_NOW | RTLD_NOLOAD) and dlsym; the mqsec_fault_*_fn typedefs below
 * are the matching pointer types. All functions are thread-safe and may be called before the
 * module is initialised.
 *
 * Child processes can be driven by the environment instead: MQSEC_FAULT_SPEC, read once per
 * process at the first C_Initialize, holds rules "fn:rv:nth:persistent" separated by ','
 * (rv is a CKR_ name or a number, e.g. "C_Sign:CKR_DEVICE_ERROR:3:0,C_Login:0x30:1:1"). A
 * malformed spec makes C_Initialize fail with CKR_GENERAL_ERROR (and a line on stderr).
 *
 * Return values are CK_RV, which is `unsigned long` on every platform p11-kit supports; the
 * header uses the plain type so that C tests need no Cryptoki header.
 */
#ifndef MQSEC_TESTS_FAULT_CONTROL_H
#define MQSEC_TESTS_FAULT_CONTROL_H

#ifdef __cplusplus
extern "C" {
#endif

/* No failure rules, all tokens present, every call counter 0. Slot ids stay as they are (a
 * card moved by mqsec_fault_insert_token(1) stays in its new reader), and sessions already
 * failed by a removal stay failed. */
void mqsec_fault_reset(void);

/* The `nth` future call of `fn` (a Cryptoki name such as "C_Sign"; 1 = the next call)
 * returns `rv` without being forwarded. With `persistent` != 0, that call and every later one
 * fail, until mqsec_fault_clear/reset. nth < 1 counts as 1. Several rules may be active. */
void mqsec_fault_fail(const char* fn, unsigned long rv, int nth, int persistent);

/* Drops every failure rule (counters and token presence are unchanged). */
void mqsec_fault_clear(void);

/* Simulates pulling the card out of every slot: C_GetSlotList(tokenPresent=TRUE) lists no
 * slot, C_GetSlotInfo clears CKF_TOKEN_PRESENT, C_GetTokenInfo, C_OpenSession, C_InitToken
 * and the mechanism queries return CKR_TOKEN_NOT_PRESENT. Each session opened before returns
 * CKR_DEVICE_REMOVED on its next call and CKR_SESSION_HANDLE_INVALID on every call after
 * that (also after re-insertion). The real module's sessions are closed (C_CloseAllSessions
 * on each real slot, after calls already in progress have returned), so its login is gone. */
void mqsec_fault_remove_token(void);

/* Re-inserts the tokens. With new_slot_ids != 0 they appear under slot ids 1000 higher than
 * before (as a card moved to another reader would); slot ids are translated both ways. */
void mqsec_fault_insert_token(int new_slot_ids);

/* How many times `fn` was called since load or the last reset (injected failures and calls
 * refused because of a removal included). */
int mqsec_fault_call_count(const char* fn);

/* A slow card: every C_Sign sleeps `milliseconds` before it is forwarded (0: no delay). Not
 * changed by mqsec_fault_reset. Child processes: MQSEC_FAULT_SIGN_DELAY_MS, read with
 * MQSEC_FAULT_SPEC. */
void mqsec_fault_set_sign_delay(int milliseconds);

typedef void (*mqsec_fault_reset_fn)(void);
typedef void (*mqsec_fault_fail_fn)(const char*, unsigned long, int, int);
typedef void (*mqsec_fault_clear_fn)(void);
typedef void (*mqsec_fault_remove_token_fn)(void);
typedef void (*mqsec_fault_insert_token_fn)(int);
typedef int (*mqsec_fault_call_count_fn)(const char*);
typedef void (*mqsec_fault_set_sign_delay_fn)(int);

#ifdef __cplusplus
}
#endif

#endif /* MQSEC_TESTS_FAULT_CONTROL_H */
