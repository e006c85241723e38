/*
 * mq.h: the Microsoft Message Queuing C API as implemented by mqsec (libmqrt).
 *
 * Names, types and numeric values are MSMQ's, so that MSMQ applications compile
 * unchanged and link with -lmqrt. Windows' integer sizes are kept on LP64:
 * HRESULT, LONG, ULONG and DWORD are 32 bits. WCHAR is wchar_t so that L"..." works
 * (on Linux that is UTF-32; mqsec converts to UTF-16 where MSMQ's formats need it).
 *
 * Items marked "mqsec extension" are ours and use ids outside MSMQ's ranges.
 */
#ifndef MQSEC_MQ_H
#define MQSEC_MQ_H

#include <stddef.h>
#include <stdint.h>
#include <wchar.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Windows-style base types ------------------------------------------ */
typedef int32_t HRESULT;
typedef int32_t LONG;
typedef uint32_t ULONG;
typedef uint32_t DWORD;
typedef int16_t SHORT;
typedef uint16_t USHORT;
typedef uint16_t WORD;
typedef char CHAR;
typedef unsigned char UCHAR;
typedef unsigned char BYTE;
typedef int BOOL;
typedef int64_t LONGLONG;
typedef uint64_t ULONGLONG;
typedef void VOID;
typedef void* PVOID;
typedef void* LPVOID;
typedef void* HANDLE;
typedef HANDLE* PHANDLE;
typedef HANDLE QUEUEHANDLE;
typedef DWORD* LPDWORD;
typedef wchar_t WCHAR;
typedef WCHAR* LPWSTR;
typedef const WCHAR* LPCWSTR;
typedef CHAR* LPSTR;
typedef const CHAR* LPCSTR;
typedef ULONG PROPID;
typedef PROPID MSGPROPID;
typedef PROPID QUEUEPROPID;
typedef USHORT VARTYPE;
typedef SHORT VARIANT_BOOL;
typedef LONG SCODE;
typedef double DATE;
typedef void* PSECURITY_DESCRIPTOR;
typedef struct ITransaction ITransaction;
typedef struct _OVERLAPPED OVERLAPPED;
typedef OVERLAPPED* LPOVERLAPPED;
typedef union _ULARGE_INTEGER {
  ULONGLONG QuadPart;
} ULARGE_INTEGER;
typedef union _LARGE_INTEGER {
  LONGLONG QuadPart;
} LARGE_INTEGER;
typedef struct _GUID {
  uint32_t Data1;
  uint16_t Data2;
  uint16_t Data3;
  uint8_t Data4[8];
} GUID, CLSID;

#ifndef APIENTRY
#define APIENTRY
#endif
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif
#ifndef INFINITE
#define INFINITE 0xFFFFFFFFu
#endif

#define SUCCEEDED(hr) (((HRESULT)(hr)) >= 0)
#define FAILED(hr) (((HRESULT)(hr)) < 0)
#define MQSEC_HR(x) ((HRESULT)(uint32_t)(x))

/* ---- VARTYPE values ---------------------------------------------------- */
#define VT_EMPTY 0
#define VT_NULL 1
#define VT_I2 2
#define VT_I4 3
#define VT_R4 4
#define VT_R8 5
#define VT_DATE 7
#define VT_BSTR 8
#define VT_ERROR 10
#define VT_BOOL 11
#define VT_VARIANT 12
#define VT_I1 16
#define VT_UI1 17
#define VT_UI2 18
#define VT_UI4 19
#define VT_I8 20
#define VT_UI8 21
#define VT_LPSTR 30
#define VT_LPWSTR 31
#define VT_CLSID 72
#define VT_VECTOR 0x1000

/* ---- property variants ------------------------------------------------- */
typedef struct tagCAUB {
  ULONG cElems;
  UCHAR* pElems;
} CAUB;
typedef struct tagCAUI {
  ULONG cElems;
  USHORT* pElems;
} CAUI;
typedef struct tagCAUL {
  ULONG cElems;
  ULONG* pElems;
} CAUL;
typedef struct tagCAUH {
  ULONG cElems;
  ULARGE_INTEGER* pElems;
} CAUH;
typedef struct tagCALPWSTR {
  ULONG cElems;
  LPWSTR* pElems;
} CALPWSTR;
struct tagMQPROPVARIANT;
typedef struct tagCAPROPVARIANT {
  ULONG cElems;
  struct tagMQPROPVARIANT* pElems;
} CAPROPVARIANT;

typedef struct tagMQPROPVARIANT {
  VARTYPE vt;
  WORD wReserved1;
  WORD wReserved2;
  WORD wReserved3;
  union {
    CHAR cVal;
    UCHAR bVal;
    SHORT iVal;
    USHORT uiVal;
    LONG lVal;
    ULONG ulVal;
    LARGE_INTEGER hVal;
    ULARGE_INTEGER uhVal;
    VARIANT_BOOL boolVal;
    SCODE scode;
    DATE date;
    CLSID* puuid;
    LPSTR pszVal;
    LPWSTR pwszVal;
    CAUB caub;
    CAUI caui;
    CAUL caul;
    CAUH cauh;
    CALPWSTR calpwstr;
    CAPROPVARIANT capropvar;
  };
} MQPROPVARIANT;
typedef MQPROPVARIANT PROPVARIANT;

typedef struct tagMQMSGPROPS {
  DWORD cProp;
  MSGPROPID* aPropID;
  MQPROPVARIANT* aPropVar;
  HRESULT* aStatus;
} MQMSGPROPS;

typedef struct tagMQQUEUEPROPS {
  DWORD cProp;
  QUEUEPROPID* aPropID;
  MQPROPVARIANT* aPropVar;
  HRESULT* aStatus;
} MQQUEUEPROPS;

/* ---- message properties (PROPID_M_*) ------------------------------------ */
#define PROPID_M_BASE 0
#define PROPID_M_CLASS 1
#define PROPID_M_MSGID 2
#define PROPID_M_CORRELATIONID 3
#define PROPID_M_PRIORITY 4
#define PROPID_M_DELIVERY 5
#define PROPID_M_ACKNOWLEDGE 6
#define PROPID_M_JOURNAL 7
#define PROPID_M_APPSPECIFIC 8
#define PROPID_M_BODY 9
#define PROPID_M_BODY_SIZE 10
#define PROPID_M_LABEL 11
#define PROPID_M_LABEL_LEN 12
#define PROPID_M_TIME_TO_REACH_QUEUE 13
#define PROPID_M_TIME_TO_BE_RECEIVED 14
#define PROPID_M_RESP_QUEUE 15
#define PROPID_M_RESP_QUEUE_LEN 16
#define PROPID_M_ADMIN_QUEUE 17
#define PROPID_M_ADMIN_QUEUE_LEN 18
#define PROPID_M_VERSION 19
#define PROPID_M_SENDERID 20
#define PROPID_M_SENDERID_LEN 21
#define PROPID_M_SENDERID_TYPE 22
#define PROPID_M_PRIV_LEVEL 23
#define PROPID_M_AUTH_LEVEL 24
#define PROPID_M_AUTHENTICATED 25
#define PROPID_M_HASH_ALG 26
#define PROPID_M_ENCRYPTION_ALG 27
#define PROPID_M_SENDER_CERT 28
#define PROPID_M_SENDER_CERT_LEN 29
#define PROPID_M_SRC_MACHINE_ID 30
#define PROPID_M_SENTTIME 31
#define PROPID_M_ARRIVEDTIME 32
#define PROPID_M_DEST_QUEUE 33
#define PROPID_M_DEST_QUEUE_LEN 34
#define PROPID_M_EXTENSION 35
#define PROPID_M_EXTENSION_LEN 36
#define PROPID_M_SECURITY_CONTEXT 37
#define PROPID_M_CONNECTOR_TYPE 38
#define PROPID_M_XACT_STATUS_QUEUE 39
#define PROPID_M_XACT_STATUS_QUEUE_LEN 40
#define PROPID_M_TRACE 41
#define PROPID_M_BODY_TYPE 42
#define PROPID_M_DEST_SYMM_KEY 43
#define PROPID_M_DEST_SYMM_KEY_LEN 44
#define PROPID_M_SIGNATURE 45
#define PROPID_M_SIGNATURE_LEN 46
#define PROPID_M_PROV_TYPE 47
#define PROPID_M_PROV_NAME 48
#define PROPID_M_PROV_NAME_LEN 49
#define PROPID_M_FIRST_IN_XACT 50
#define PROPID_M_LAST_IN_XACT 51
#define PROPID_M_XACTID 52
#define PROPID_M_AUTHENTICATED_EX 53

#define PROPID_M_MSGID_SIZE 20
#define PROPID_M_CORRELATIONID_SIZE 20
#define PROPID_M_XACTID_SIZE 20

/* mqsec extension (VT_UI1, receive only): 1 when PROPID_M_SENDERID is confirmed by a source no
 * other local user can write: the SID in a certificate whose chain validated, the root-owned
 * system registry, or the receiving user's own registry (MQRegisterCertificate); else 0. */
#define PROPID_M_MQSEC_SENDER_CONFIRMED 0x00010001
/* mqsec extension (VT_UI4, receive only): which trust checks the message passed, a bitwise OR
 * of MQSEC_TRUST_* (0 for an unsigned message). docs/security.md says what each one means. */
#define PROPID_M_MQSEC_TRUST 0x00010002
#define MQSEC_TRUST_SIGNATURE 0x00000001            /* the signature verified */
#define MQSEC_TRUST_CHAIN 0x00000002                /* the certificate chains to a trust anchor */
#define MQSEC_TRUST_REVOCATION_CHECKED 0x00000004   /* a CRL or OCSP answer: not revoked */
#define MQSEC_TRUST_SID_FROM_CERTIFICATE 0x00000008 /* SENDERID is the SID in the certificate */
#define MQSEC_TRUST_SYSTEM_REGISTRY 0x00000010      /* ... bound by the root-owned registry */
#define MQSEC_TRUST_USER_REGISTRY 0x00000020        /* ... bound by the receiver's own registry */
#define MQSEC_TRUST_SIGNER_AUTHORIZED 0x00000040    /* an authorized signer of the queue */

/* ---- queue properties (PROPID_Q_*) -------------------------------------- */
#define PROPID_Q_BASE 100
#define PROPID_Q_INSTANCE 101
#define PROPID_Q_TYPE 102
#define PROPID_Q_PATHNAME 103
#define PROPID_Q_JOURNAL 104
#define PROPID_Q_QUOTA 105
#define PROPID_Q_BASEPRIORITY 106
#define PROPID_Q_JOURNAL_QUOTA 107
#define PROPID_Q_LABEL 108
#define PROPID_Q_CREATE_TIME 109
#define PROPID_Q_MODIFY_TIME 110
#define PROPID_Q_AUTHENTICATE 111
#define PROPID_Q_PRIV_LEVEL 112
#define PROPID_Q_TRANSACTION 113

/* ---- property values --------------------------------------------------- */
#define MQ_MIN_PRIORITY 0
#define MQ_MAX_PRIORITY 7
#define DEFAULT_M_PRIORITY 3

#define MQMSG_DELIVERY_EXPRESS 0
#define MQMSG_DELIVERY_RECOVERABLE 1

#define MQMSG_ACKNOWLEDGMENT_NONE 0x00
#define MQMSG_ACKNOWLEDGMENT_POS_ARRIVAL 0x01
#define MQMSG_ACKNOWLEDGMENT_POS_RECEIVE 0x02
#define MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL 0x04
#define MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE 0x08
#define MQMSG_ACKNOWLEDGMENT_NACK_REACH_QUEUE MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL
#define MQMSG_ACKNOWLEDGMENT_FULL_REACH_QUEUE \
  (MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL | MQMSG_ACKNOWLEDGMENT_POS_ARRIVAL)
#define MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE \
  (MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL | MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE)
#define MQMSG_ACKNOWLEDGMENT_FULL_RECEIVE                                \
  (MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL | MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE | \
   MQMSG_ACKNOWLEDGMENT_POS_RECEIVE)

#define MQMSG_JOURNAL_NONE 0
#define MQMSG_DEADLETTER 1
#define MQMSG_JOURNAL 2

#define MQMSG_SENDERID_TYPE_NONE 0
#define MQMSG_SENDERID_TYPE_SID 1

#define MQMSG_AUTH_LEVEL_NONE 0
#define MQMSG_AUTH_LEVEL_ALWAYS 1
#define MQMSG_AUTH_LEVEL_MSMQ10 2
#define MQMSG_AUTH_LEVEL_SIG10 2
#define MQMSG_AUTH_LEVEL_MSMQ20 4
#define MQMSG_AUTH_LEVEL_SIG20 4
#define MQMSG_AUTH_LEVEL_SIG30 8

#define MQMSG_AUTHENTICATION_NOT_REQUESTED 0
#define MQMSG_AUTHENTICATION_REQUESTED 1
#define MQMSG_AUTHENTICATION_REQUESTED_EX 3
#define MQMSG_AUTHENTICATED_SIG10 1
#define MQMSG_AUTHENTICATED_SIG20 3
#define MQMSG_AUTHENTICATED_SIG30 5
#define MQMSG_AUTHENTICATED_SIGXML 9

#define MQMSG_PRIV_LEVEL_NONE 0

#define CALG_MD5 0x00008003
#define CALG_SHA1 0x00008004
#define CALG_SHA 0x00008004
#define CALG_SHA_256 0x0000800C
#define CALG_SHA_384 0x0000800D
#define CALG_SHA_512 0x0000800E

#define MQ_AUTHENTICATE_NONE 0
#define MQ_AUTHENTICATE 1
#define MQ_TRANSACTIONAL_NONE 0
#define MQ_TRANSACTIONAL 1

#define MQCERT_REGISTER_ALWAYS 0x1
#define MQCERT_REGISTER_IF_NOT_EXIST 0x2

#define MQ_RECEIVE_ACCESS 0x00000001
#define MQ_SEND_ACCESS 0x00000002
#define MQ_PEEK_ACCESS 0x00000020
#define MQ_ADMIN_ACCESS 0x00000080

#define MQ_DENY_NONE 0x00000000
#define MQ_DENY_RECEIVE_SHARE 0x00000001

#define MQ_ACTION_RECEIVE 0x00000000
#define MQ_ACTION_PEEK_CURRENT 0x80000000
#define MQ_ACTION_PEEK_NEXT 0x80000001

#define MQ_NO_TRANSACTION NULL
#define MQ_SINGLE_MESSAGE ((ITransaction*)3)

#define MQ_MAX_MSG_LABEL_LEN 250
#define MQ_MAX_Q_NAME_LEN 124
#define MQ_MAX_Q_LABEL_LEN 124

#define MQCLASS_CODE(s, r, code) ((USHORT)(((s) << 15) | ((r) << 14) | (code)))
#define MQMSG_CLASS_NORMAL MQCLASS_CODE(0, 0, 0x00)
#define MQMSG_CLASS_REPORT MQCLASS_CODE(0, 0, 0x01)
#define MQMSG_CLASS_ACK_REACH_QUEUE MQCLASS_CODE(0, 0, 0x02)
#define MQMSG_CLASS_ACK_RECEIVE MQCLASS_CODE(0, 1, 0x00)
#define MQMSG_CLASS_NACK_BAD_DST_Q MQCLASS_CODE(1, 0, 0x00)
#define MQMSG_CLASS_NACK_PURGED MQCLASS_CODE(1, 0, 0x01)
#define MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT MQCLASS_CODE(1, 0, 0x02)
#define MQMSG_CLASS_NACK_Q_EXCEED_QUOTA MQCLASS_CODE(1, 0, 0x03)
#define MQMSG_CLASS_NACK_ACCESS_DENIED MQCLASS_CODE(1, 0, 0x04)
#define MQMSG_CLASS_NACK_HOP_COUNT_EXCEEDED MQCLASS_CODE(1, 0, 0x05)
#define MQMSG_CLASS_NACK_BAD_SIGNATURE MQCLASS_CODE(1, 0, 0x06)
#define MQMSG_CLASS_NACK_BAD_ENCRYPTION MQCLASS_CODE(1, 0, 0x07)
#define MQMSG_CLASS_NACK_COULD_NOT_ENCRYPT MQCLASS_CODE(1, 0, 0x08)

/* ---- result codes ------------------------------------------------------ */
#define MQ_OK MQSEC_HR(0x00000000)
#define MQ_ERROR MQSEC_HR(0xC00E0001)
#define MQ_ERROR_PROPERTY MQSEC_HR(0xC00E0002)
#define MQ_ERROR_QUEUE_NOT_FOUND MQSEC_HR(0xC00E0003)
#define MQ_ERROR_QUEUE_EXISTS MQSEC_HR(0xC00E0005)
#define MQ_ERROR_INVALID_PARAMETER MQSEC_HR(0xC00E0006)
#define MQ_ERROR_INVALID_HANDLE MQSEC_HR(0xC00E0007)
#define MQ_ERROR_OPERATION_CANCELLED MQSEC_HR(0xC00E0008)
#define MQ_ERROR_SHARING_VIOLATION MQSEC_HR(0xC00E0009)
#define MQ_ERROR_SERVICE_NOT_AVAILABLE MQSEC_HR(0xC00E000B)
#define MQ_ERROR_ILLEGAL_USER MQSEC_HR(0xC00E0011)
#define MQ_ERROR_NO_DS MQSEC_HR(0xC00E0013)
#define MQ_ERROR_ILLEGAL_QUEUE_PATHNAME MQSEC_HR(0xC00E0014)
#define MQ_ERROR_ILLEGAL_PROPERTY_VALUE MQSEC_HR(0xC00E0018)
#define MQ_ERROR_ILLEGAL_PROPERTY_VT MQSEC_HR(0xC00E0019)
#define MQ_ERROR_BUFFER_OVERFLOW MQSEC_HR(0xC00E001A)
#define MQ_ERROR_IO_TIMEOUT MQSEC_HR(0xC00E001B)
#define MQ_ERROR_ILLEGAL_CURSOR_ACTION MQSEC_HR(0xC00E001C)
#define MQ_ERROR_MESSAGE_ALREADY_RECEIVED MQSEC_HR(0xC00E001D)
#define MQ_ERROR_ILLEGAL_FORMATNAME MQSEC_HR(0xC00E001E)
#define MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL MQSEC_HR(0xC00E001F)
#define MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION MQSEC_HR(0xC00E0020)
#define MQ_ERROR_SENDERID_BUFFER_TOO_SMALL MQSEC_HR(0xC00E0022)
#define MQ_ERROR_ACCESS_DENIED MQSEC_HR(0xC00E0025)
#define MQ_ERROR_PRIVILEGE_NOT_HELD MQSEC_HR(0xC00E0026)
#define MQ_ERROR_INSUFFICIENT_RESOURCES MQSEC_HR(0xC00E0027)
#define MQ_ERROR_USER_BUFFER_TOO_SMALL MQSEC_HR(0xC00E0028)
#define MQ_ERROR_MESSAGE_STORAGE_FAILED MQSEC_HR(0xC00E002A)
#define MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL MQSEC_HR(0xC00E002B)
#define MQ_ERROR_INVALID_CERTIFICATE MQSEC_HR(0xC00E002C)
#define MQ_ERROR_CORRUPTED_INTERNAL_CERTIFICATE MQSEC_HR(0xC00E002D)
#define MQ_ERROR_INTERNAL_USER_CERT_EXIST MQSEC_HR(0xC00E002E)
#define MQ_ERROR_NO_INTERNAL_USER_CERT MQSEC_HR(0xC00E002F)
#define MQ_ERROR_CORRUPTED_SECURITY_DATA MQSEC_HR(0xC00E0030)
#define MQ_ERROR_CORRUPTED_PERSONAL_CERT_STORE MQSEC_HR(0xC00E0031)
#define MQ_ERROR_BAD_SECURITY_CONTEXT MQSEC_HR(0xC00E0035)
#define MQ_ERROR_COULD_NOT_GET_USER_SID MQSEC_HR(0xC00E0036)
#define MQ_ERROR_COULD_NOT_GET_ACCOUNT_INFO MQSEC_HR(0xC00E0037)
#define MQ_ERROR_ILLEGAL_PROPID MQSEC_HR(0xC00E0039)
#define MQ_ERROR_ILLEGAL_PROPERTY_SIZE MQSEC_HR(0xC00E003B)
#define MQ_ERROR_TRANSACTION_USAGE MQSEC_HR(0xC00E0050)
#define MQ_ERROR_STALE_HANDLE MQSEC_HR(0xC00E0056)
#define MQ_ERROR_QUEUE_DELETED MQSEC_HR(0xC00E005A)
#define MQ_ERROR_LABEL_TOO_LONG MQSEC_HR(0xC00E005D)
#define MQ_ERROR_LABEL_BUFFER_TOO_SMALL MQSEC_HR(0xC00E005E)
#define MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL MQSEC_HR(0xC00E0062)
#define MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE MQSEC_HR(0xC00E0069)
#define MQ_ERROR_CERTIFICATE_NOT_PROVIDED MQSEC_HR(0xC00E006D)
#define MQ_ERROR_CANNOT_CREATE_CERT_STORE MQSEC_HR(0xC00E006F)
#define MQ_ERROR_CANNOT_OPEN_CERT_STORE MQSEC_HR(0xC00E0070)
#define MQ_ERROR_CANNOT_SIGN_DATA_EX MQSEC_HR(0xC00E0080)
#define MQ_ERROR_FAIL_VERIFY_SIGNATURE_EX MQSEC_HR(0xC00E0082)

#define MQ_INFORMATION_PROPERTY MQSEC_HR(0x400E0001)
#define MQ_INFORMATION_ILLEGAL_PROPERTY MQSEC_HR(0x400E0002)
#define MQ_INFORMATION_PROPERTY_IGNORED MQSEC_HR(0x400E0003)
#define MQ_INFORMATION_UNSUPPORTED_PROPERTY MQSEC_HR(0x400E0004)
#define MQ_INFORMATION_DUPLICATE_PROPERTY MQSEC_HR(0x400E0005)
#define MQ_INFORMATION_OPERATION_PENDING MQSEC_HR(0x400E0006)
#define MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL MQSEC_HR(0x400E0009)
#define MQ_INFORMATION_INTERNAL_USER_CERT_EXIST MQSEC_HR(0x400E000A)

/* ---- functions --------------------------------------------------------- */
typedef void(APIENTRY* PMQRECEIVECALLBACK)(HRESULT hrStatus, QUEUEHANDLE hSource, DWORD dwTimeout,
                                           DWORD dwAction, MQMSGPROPS* pMessageProps,
                                           LPOVERLAPPED lpOverlapped, HANDLE hCursor);

/* Security context (sender authentication). */
HRESULT APIENTRY MQGetSecurityContextEx(LPVOID lpCertBuffer, DWORD dwCertBufferLength,
                                        HANDLE* phSecurityContext);
HRESULT APIENTRY MQGetSecurityContext(LPVOID lpCertBuffer, DWORD dwCertBufferLength,
                                      HANDLE* phSecurityContext);
VOID APIENTRY MQFreeSecurityContext(HANDLE hSecurityContext);
HRESULT APIENTRY MQRegisterCertificate(DWORD dwFlags, LPVOID lpCertBuffer,
                                       DWORD dwCertBufferLength);

/* Queues and messages. */
HRESULT APIENTRY MQCreateQueue(PSECURITY_DESCRIPTOR pSecurityDescriptor, MQQUEUEPROPS* pQueueProps,
                               LPWSTR lpwcsFormatName, LPDWORD lpdwFormatNameLength);
HRESULT APIENTRY MQDeleteQueue(LPCWSTR lpwcsFormatName);
HRESULT APIENTRY MQOpenQueue(LPCWSTR lpwcsFormatName, DWORD dwAccess, DWORD dwShareMode,
                             QUEUEHANDLE* phQueue);
HRESULT APIENTRY MQCloseQueue(QUEUEHANDLE hQueue);
HRESULT APIENTRY MQPathNameToFormatName(LPCWSTR lpwcsPathName, LPWSTR lpwcsFormatName,
                                        LPDWORD lpdwFormatNameLength);
HRESULT APIENTRY MQSendMessage(QUEUEHANDLE hDestinationQueue, MQMSGPROPS* pMessageProps,
                               ITransaction* pTransaction);
HRESULT APIENTRY MQReceiveMessage(QUEUEHANDLE hSource, DWORD dwTimeout, DWORD dwAction,
                                  MQMSGPROPS* pMessageProps, LPOVERLAPPED lpOverlapped,
                                  PMQRECEIVECALLBACK fnReceiveCallback, HANDLE hCursor,
                                  ITransaction* pTransaction);
HRESULT APIENTRY MQCreateCursor(QUEUEHANDLE hQueue, PHANDLE phCursor);
HRESULT APIENTRY MQCloseCursor(HANDLE hCursor);
VOID APIENTRY MQFreeMemory(PVOID pvMemory);

#ifdef __cplusplus
}
#endif

#endif /* MQSEC_MQ_H */
