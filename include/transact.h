/*
 * transact.h: the OLE transaction interface (ITransaction) that MSMQ's internal transactions
 * use, as mqsec (libmqrt) implements it: MQBeginTransaction (mq.h) hands out an ITransaction
 * whose Commit, Abort and Release are called through its vtable, from C
 * (p->lpVtbl->Commit(p, 0, 0, 0)) or from C++ (p->Commit(0, 0, 0)).
 *
 * Names, layouts and values are Windows' (transact.h, winerror.h). Include it before or after
 * mq.h (it includes mq.h for the base types). The C++ interfaces follow the COM layout of
 * GCC and Clang (Itanium ABI: the vtable pointer first, the methods in declaration order), so
 * an object made by libmqrt is usable from C and from C++ alike.
 *
 * What libmqrt's transactions do, and the errors they answer: docs/msmq-api.md, Transactions.
 */
#ifndef MQSEC_TRANSACT_H
#define MQSEC_TRANSACT_H

#include <mq.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef STDMETHODCALLTYPE
#define STDMETHODCALLTYPE
#endif

#ifndef _REFIID_DEFINED
#define _REFIID_DEFINED
#ifdef __cplusplus
#define REFIID const IID&
#else
#define REFIID const IID*
#endif
#endif

/* A unit of work's id (XACTUOW) and an abort reason. */
#ifndef BOID_DEFINED
#define BOID_DEFINED
typedef struct BOID {
  BYTE rgb[16];
} BOID;
#endif
typedef BOID XACTUOW;
typedef LONG ISOLEVEL;

/* ISOLEVEL values (an internal MSMQ transaction reports ISOLATIONLEVEL_SERIALIZABLE). */
#define ISOLATIONLEVEL_UNSPECIFIED 0xFFFFFFFF
#define ISOLATIONLEVEL_CHAOS 0x10
#define ISOLATIONLEVEL_READUNCOMMITTED 0x100
#define ISOLATIONLEVEL_BROWSE 0x100
#define ISOLATIONLEVEL_CURSORSTABILITY 0x1000
#define ISOLATIONLEVEL_READCOMMITTED 0x1000
#define ISOLATIONLEVEL_REPEATABLEREAD 0x10000
#define ISOLATIONLEVEL_SERIALIZABLE 0x100000
#define ISOLATIONLEVEL_ISOLATED 0x100000

/* ITransaction::Commit's grfTC. */
#define XACTTC_NONE 0
#define XACTTC_SYNC_PHASEONE 1
#define XACTTC_SYNC_PHASETWO 2
#define XACTTC_SYNC 2
#define XACTTC_ASYNC_PHASEONE 4
#define XACTTC_ASYNC 4

typedef struct XACTTRANSINFO {
  XACTUOW uow;
  ISOLEVEL isoLevel;
  ULONG isoFlags;
  DWORD grfTCSupported;
  DWORD grfRMSupported;
  DWORD grfTCSupportedRetaining;
  DWORD grfRMSupportedRetaining;
} XACTTRANSINFO;

/* winerror.h: COM and transaction results. */
#define MQSEC_XACT_HR(v) ((HRESULT)(int32_t)(uint32_t)(v))
#ifndef S_OK
#define S_OK ((HRESULT)0)
#endif
#ifndef E_NOINTERFACE
#define E_NOINTERFACE MQSEC_XACT_HR(0x80004002)
#endif
#ifndef E_POINTER
#define E_POINTER MQSEC_XACT_HR(0x80004003)
#endif
#ifndef E_FAIL
#define E_FAIL MQSEC_XACT_HR(0x80004005)
#endif
#ifndef E_INVALIDARG
#define E_INVALIDARG MQSEC_XACT_HR(0x80070057)
#endif
#define XACT_E_ALREADYOTHERSINGLEPHASE MQSEC_XACT_HR(0x8004D000)
#define XACT_E_CANTRETAIN MQSEC_XACT_HR(0x8004D001)
#define XACT_E_COMMITFAILED MQSEC_XACT_HR(0x8004D002)
#define XACT_E_COMMITPREVENTED MQSEC_XACT_HR(0x8004D003)
#define XACT_E_HEURISTICABORT MQSEC_XACT_HR(0x8004D004)
#define XACT_E_HEURISTICCOMMIT MQSEC_XACT_HR(0x8004D005)
#define XACT_E_HEURISTICDAMAGE MQSEC_XACT_HR(0x8004D006)
#define XACT_E_HEURISTICDANGER MQSEC_XACT_HR(0x8004D007)
#define XACT_E_ISOLATIONLEVEL MQSEC_XACT_HR(0x8004D008)
#define XACT_E_NOASYNC MQSEC_XACT_HR(0x8004D009)
#define XACT_E_NOENLIST MQSEC_XACT_HR(0x8004D00A)
#define XACT_E_NOISORETAIN MQSEC_XACT_HR(0x8004D00B)
#define XACT_E_NORESOURCE MQSEC_XACT_HR(0x8004D00C)
#define XACT_E_NOTCURRENT MQSEC_XACT_HR(0x8004D00D)
#define XACT_E_NOTRANSACTION MQSEC_XACT_HR(0x8004D00E)
#define XACT_E_NOTSUPPORTED MQSEC_XACT_HR(0x8004D00F)
#define XACT_E_UNKNOWNRMGRID MQSEC_XACT_HR(0x8004D010)
#define XACT_E_WRONGSTATE MQSEC_XACT_HR(0x8004D011)
#define XACT_E_WRONGUOW MQSEC_XACT_HR(0x8004D012)
#define XACT_E_XTIONEXISTS MQSEC_XACT_HR(0x8004D013)
#define XACT_E_NOIMPORTOBJECT MQSEC_XACT_HR(0x8004D014)
#define XACT_E_INVALIDCOOKIE MQSEC_XACT_HR(0x8004D015)
#define XACT_E_INDOUBT MQSEC_XACT_HR(0x8004D016)
#define XACT_E_NOTIMEOUT MQSEC_XACT_HR(0x8004D017)
#define XACT_E_ALREADYINPROGRESS MQSEC_XACT_HR(0x8004D018)
#define XACT_E_ABORTED MQSEC_XACT_HR(0x8004D019)
#define XACT_E_LOGFULL MQSEC_XACT_HR(0x8004D01A)
#define XACT_E_TMNOTAVAILABLE MQSEC_XACT_HR(0x8004D01B)
#define XACT_E_CONNECTION_DOWN MQSEC_XACT_HR(0x8004D01C)
#define XACT_S_ASYNC MQSEC_XACT_HR(0x0004D000)
#define XACT_S_DEFECT MQSEC_XACT_HR(0x0004D001)
#define XACT_S_READONLY MQSEC_XACT_HR(0x0004D002)
#define XACT_S_SOMENORETAIN MQSEC_XACT_HR(0x0004D003)

/* IID_IUnknown {00000000-0000-0000-C000-000000000046} and IID_ITransaction
 * {0FB15084-AF41-11CE-BD2B-204C4F4F5020}, as GUID initializers (QueryInterface answers both). */
#define MQSEC_IID_IUNKNOWN_INIT                                  \
  {                                                              \
    0x00000000, 0x0000, 0x0000, { 0xC0, 0, 0, 0, 0, 0, 0, 0x46 } \
  }
#define MQSEC_IID_ITRANSACTION_INIT                                                \
  {                                                                                \
    0x0FB15084, 0xAF41, 0x11CE, { 0xBD, 0x2B, 0x20, 0x4C, 0x4F, 0x4F, 0x50, 0x20 } \
  }

#ifdef __cplusplus
} /* extern "C" */
#endif

#ifndef __ITransaction_INTERFACE_DEFINED__
#define __ITransaction_INTERFACE_DEFINED__
#ifdef __cplusplus

#ifndef __IUnknown_INTERFACE_DEFINED__
#define __IUnknown_INTERFACE_DEFINED__
struct IUnknown {
  virtual HRESULT STDMETHODCALLTYPE QueryInterface(REFIID riid, void** ppvObject) = 0;
  virtual ULONG STDMETHODCALLTYPE AddRef() = 0;
  virtual ULONG STDMETHODCALLTYPE Release() = 0;

 protected:
  ~IUnknown() = default;  // not virtual (COM's layout): objects go with Release, never delete
};
#endif

struct ITransaction : public IUnknown {
  virtual HRESULT STDMETHODCALLTYPE Commit(BOOL fRetaining, DWORD grfTC, DWORD grfRM) = 0;
  virtual HRESULT STDMETHODCALLTYPE Abort(BOID* pboidReason, BOOL fRetaining, BOOL fAsync) = 0;
  virtual HRESULT STDMETHODCALLTYPE GetTransactionInfo(XACTTRANSINFO* pinfo) = 0;

 protected:
  ~ITransaction() = default;
};

#else /* C: the same object seen through its vtable */

typedef struct ITransactionVtbl {
  HRESULT(STDMETHODCALLTYPE* QueryInterface)(ITransaction* This, REFIID riid, void** ppvObject);
  ULONG(STDMETHODCALLTYPE* AddRef)(ITransaction* This);
  ULONG(STDMETHODCALLTYPE* Release)(ITransaction* This);
  HRESULT(STDMETHODCALLTYPE* Commit)(ITransaction* This, BOOL fRetaining, DWORD grfTC, DWORD grfRM);
  HRESULT(STDMETHODCALLTYPE* Abort)
  (ITransaction* This, BOID* pboidReason, BOOL fRetaining, BOOL fAsync);
  HRESULT(STDMETHODCALLTYPE* GetTransactionInfo)(ITransaction* This, XACTTRANSINFO* pinfo);
} ITransactionVtbl;

struct ITransaction {
  const ITransactionVtbl* lpVtbl;
};

#define ITransaction_QueryInterface(This, riid, ppv) \
  ((This)->lpVtbl->QueryInterface(This, riid, ppv))
#define ITransaction_AddRef(This) ((This)->lpVtbl->AddRef(This))
#define ITransaction_Release(This) ((This)->lpVtbl->Release(This))
#define ITransaction_Commit(This, fRetaining, grfTC, grfRM) \
  ((This)->lpVtbl->Commit(This, fRetaining, grfTC, grfRM))
#define ITransaction_Abort(This, pboidReason, fRetaining, fAsync) \
  ((This)->lpVtbl->Abort(This, pboidReason, fRetaining, fAsync))
#define ITransaction_GetTransactionInfo(This, pinfo) \
  ((This)->lpVtbl->GetTransactionInfo(This, pinfo))

#endif /* __cplusplus */
#endif /* __ITransaction_INTERFACE_DEFINED__ */

#endif /* MQSEC_TRANSACT_H */
