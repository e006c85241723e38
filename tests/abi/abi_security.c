/* ABI test of the security-context API: a C11 program that includes only <mq.h> (and the C
 * library's <stdio.h> for its messages) and links only with libmqrt, as an MSMQ application
 * would. Run by CTest under mqsec-with-softhsm,
 * which provides a SoftHSM token and an mqsec configuration (MQSEC_CONFIG) for it.
 * Exit status: 0 if every check passed, 1 otherwise (each failure is printed). */
#include <mq.h>
#include <stdio.h>

static int failures = 0;

static void check(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

static void check_hr(HRESULT expected, HRESULT actual, const char* what) {
  if (expected != actual) {
    fprintf(stderr, "FAILED: %s: expected 0x%08lX, got 0x%08lX\n", what,
            (unsigned long)(ULONG)expected, (unsigned long)(ULONG)actual);
    ++failures;
  }
}

_Static_assert(sizeof(HRESULT) == 4, "HRESULT is 32 bits");
_Static_assert(sizeof(DWORD) == 4, "DWORD is 32 bits");
_Static_assert(sizeof(ULONG) == 4, "ULONG is 32 bits (LP64 Linux: not unsigned long)");
_Static_assert(sizeof(HANDLE) == sizeof(void*), "HANDLE is a pointer");
_Static_assert((HRESULT)-1 < 0, "HRESULT is signed");

int main(void) {
  unsigned char buf[8] = {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00};
  HANDLE h = (HANDLE)0;
  HANDLE h2 = (HANDLE)0;
  HRESULT hr;

  /* Values and the FAILED/SUCCEEDED macros. */
  check(MQ_OK == 0, "MQ_OK == 0");
  check((unsigned long)(ULONG)MQ_ERROR_INVALID_PARAMETER == 0xC00E0006UL,
        "MQ_ERROR_INVALID_PARAMETER == 0xC00E0006");
  check((unsigned long)(ULONG)MQ_INFORMATION_INTERNAL_USER_CERT_EXIST == 0x400E000AUL,
        "MQ_INFORMATION_INTERNAL_USER_CERT_EXIST == 0x400E000A");
  check(FAILED(MQ_ERROR_INVALID_PARAMETER), "FAILED(MQ_ERROR_INVALID_PARAMETER)");
  check(!SUCCEEDED(MQ_ERROR_INVALID_PARAMETER), "!SUCCEEDED(MQ_ERROR_INVALID_PARAMETER)");
  check(FAILED(MQ_ERROR_NO_INTERNAL_USER_CERT), "FAILED(MQ_ERROR_NO_INTERNAL_USER_CERT)");
  check(SUCCEEDED(MQ_OK) && !FAILED(MQ_OK), "SUCCEEDED(MQ_OK)");
  check(SUCCEEDED(MQ_INFORMATION_INTERNAL_USER_CERT_EXIST) &&
            !FAILED(MQ_INFORMATION_INTERNAL_USER_CERT_EXIST),
        "an information code is a success");
  check(MQCERT_REGISTER_ALWAYS == 1 && MQCERT_REGISTER_IF_NOT_EXIST == 2, "MQCERT_REGISTER_*");

  /* Invalid parameters. */
  check_hr(MQ_ERROR_INVALID_PARAMETER, MQGetSecurityContextEx(NULL, 0, NULL),
           "MQGetSecurityContextEx(NULL, 0, NULL)");
  check_hr(MQ_ERROR_INVALID_PARAMETER, MQGetSecurityContextEx(NULL, 8, &h),
           "MQGetSecurityContextEx(NULL, 8, &h)");
  check_hr(MQ_ERROR_INVALID_PARAMETER, MQGetSecurityContextEx(buf, 0, &h),
           "MQGetSecurityContextEx(buf, 0, &h)");
  check_hr(MQ_ERROR_INVALID_PARAMETER, MQGetSecurityContext(NULL, 0, NULL),
           "MQGetSecurityContext(NULL, 0, NULL)");
  check_hr(MQ_ERROR_INVALID_PARAMETER, MQGetSecurityContext(NULL, 8, &h),
           "MQGetSecurityContext(NULL, 8, &h)");
  check_hr(MQ_ERROR_INVALID_PARAMETER, MQGetSecurityContext(buf, 0, &h),
           "MQGetSecurityContext(buf, 0, &h)");
  check_hr(MQ_ERROR_INVALID_PARAMETER, MQRegisterCertificate(0, NULL, 0),
           "MQRegisterCertificate(0, NULL, 0)");
  check_hr(MQ_ERROR_INVALID_PARAMETER, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, NULL, 8),
           "MQRegisterCertificate(ALWAYS, NULL, 8)");
  check_hr(MQ_ERROR_INVALID_CERTIFICATE, MQGetSecurityContextEx(buf, sizeof buf, &h),
           "MQGetSecurityContextEx(not a certificate)");

  /* The internal certificate, in the environment mqsec-with-softhsm made. */
  check_hr(MQ_OK, MQRegisterCertificate(MQCERT_REGISTER_ALWAYS, NULL, 0),
           "MQRegisterCertificate(ALWAYS, NULL, 0)");
  check_hr(MQ_INFORMATION_INTERNAL_USER_CERT_EXIST,
           MQRegisterCertificate(MQCERT_REGISTER_IF_NOT_EXIST, NULL, 0),
           "MQRegisterCertificate(IF_NOT_EXIST, NULL, 0)");
  hr = MQGetSecurityContextEx(NULL, 0, &h);
  check_hr(MQ_OK, hr, "MQGetSecurityContextEx(NULL, 0, &h)");
  check(h != (HANDLE)0, "the context handle is not NULL");
  check((uintptr_t)h <= 0xFFFFFFFFu,
        "the context handle fits in 32 bits (PROPID_M_SECURITY_CONTEXT is VT_UI4)");
  hr = MQGetSecurityContext(NULL, 0, &h2);
  check_hr(MQ_OK, hr, "MQGetSecurityContext(NULL, 0, &h2)");
  check(h2 != h, "two live contexts have different handles");

  MQFreeSecurityContext(h);
  MQFreeSecurityContext(h); /* twice: a no-op */
  MQFreeSecurityContext(h2);
  MQFreeSecurityContext(NULL);
  MQFreeSecurityContext((HANDLE)0x12345);

  if (failures == 0) printf("abi_security: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
