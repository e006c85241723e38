// MQBeginTransaction and its ITransaction objects (include/transact.h): a COM-style object whose
// vtable C calls through lpVtbl and C++ through virtual calls (the same layout), around a
// core::Transaction. Every object handed out is in a registry, so a pTransaction argument is
// only used when it is one of ours (any other pointer is never dereferenced).
#include <transact.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_set>

#include "mqsec/error.hpp"
#include "pkcs11/call_gate.hpp"
#include "src/abi/guard.hpp"
#include "src/abi/transaction.hpp"

namespace mqsec::abi {
namespace {

class TransactionObject;

// The live objects of this process (immortal: exit handlers may still release objects).
struct Registry {
  std::mutex mu;
  std::unordered_set<const ITransaction*> live;
};
Registry& registry() {
  static Registry* r = [] {
    auto* made = new Registry();
    // A leaf lock (look up, insert, erase): a fork while another thread holds it must not
    // leave the child's next transaction call or Release waiting for ever.
    pkcs11::register_fork_mutex(made->mu);
    return made;
  }();
  return *r;
}

bool same_guid(const IID& a, const IID& b) { return std::memcmp(&a, &b, sizeof(IID)) == 0; }

class TransactionObject final : public ITransaction {
 public:
  TransactionObject() : tx_(std::make_shared<core::Transaction>()) {}

  HRESULT STDMETHODCALLTYPE QueryInterface(REFIID riid, void** ppv) override {
    // C callers may pass NULL for riid (a reference here): read its address through a
    // volatile so the check is not optimised away.
    const IID* volatile id = &riid;
    if (ppv == nullptr) return E_POINTER;
    *ppv = nullptr;
    if (id == nullptr) return E_INVALIDARG;
    static const IID kUnknown = MQSEC_IID_IUNKNOWN_INIT;
    static const IID kTransaction = MQSEC_IID_ITRANSACTION_INIT;
    if (!same_guid(*id, kUnknown) && !same_guid(*id, kTransaction)) return E_NOINTERFACE;
    AddRef();
    *ppv = static_cast<ITransaction*>(this);
    return S_OK;
  }

  ULONG STDMETHODCALLTYPE AddRef() override {
    return refs_.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  // The last Release aborts a transaction still active (in the process that began it).
  ULONG STDMETHODCALLTYPE Release() override {
    Registry& r = registry();
    std::unique_lock lock(r.mu);  // no lookup may copy tx_ while the object goes
    const ULONG left = refs_.fetch_sub(1, std::memory_order_acq_rel) - 1;
    if (left != 0) return left;
    r.live.erase(this);
    lock.unlock();
    delete this;  // ~core::Transaction aborts it if still active
    return 0;
  }

  HRESULT STDMETHODCALLTYPE Commit(BOOL fRetaining, DWORD grfTC, DWORD grfRM) override {
    if (fRetaining) return XACT_E_CANTRETAIN;
    // Synchronous, phase one or two, or asynchronous: the commit is done when this returns.
    if (grfTC != XACTTC_NONE && grfTC != XACTTC_SYNC_PHASEONE && grfTC != XACTTC_SYNC_PHASETWO &&
        grfTC != XACTTC_ASYNC_PHASEONE) {
      return XACT_E_NOTSUPPORTED;
    }
    if (grfRM != 0) return XACT_E_NOTSUPPORTED;
    try {
      return tx_->commit();
    } catch (...) {
      return XACT_E_COMMITFAILED;
    }
  }

  HRESULT STDMETHODCALLTYPE Abort(BOID* /*pboidReason*/, BOOL fRetaining,
                                  BOOL /*fAsync: done when this returns*/) override {
    if (fRetaining) return XACT_E_CANTRETAIN;
    try {
      return tx_->abort();
    } catch (...) {
      return E_FAIL;
    }
  }

  HRESULT STDMETHODCALLTYPE GetTransactionInfo(XACTTRANSINFO* pinfo) override {
    if (pinfo == nullptr) return E_INVALIDARG;
    if (!tx_->ours() || tx_->state() != core::Transaction::State::Active) {
      return XACT_E_NOTRANSACTION;
    }
    std::memset(pinfo, 0, sizeof(*pinfo));
    std::memcpy(pinfo->uow.rgb, tx_->uow().data(), sizeof(pinfo->uow.rgb));
    pinfo->isoLevel = ISOLATIONLEVEL_SERIALIZABLE;
    pinfo->grfTCSupported = XACTTC_SYNC_PHASEONE | XACTTC_SYNC_PHASETWO | XACTTC_ASYNC_PHASEONE;
    return S_OK;
  }

  const std::shared_ptr<core::Transaction>& transaction() const noexcept { return tx_; }

 private:
  ~TransactionObject() = default;

  const std::shared_ptr<core::Transaction> tx_;
  std::atomic<ULONG> refs_{1};
};

}  // namespace

TransactionArg transaction_arg(ITransaction* p) {
  TransactionArg arg;
  if (p == MQ_NO_TRANSACTION) return arg;
  if (p == MQ_SINGLE_MESSAGE) {
    arg.single = true;
    return arg;
  }
  if (p == MQ_MTS_TRANSACTION || p == MQ_XA_TRANSACTION) {
    throw Error(MQ_ERROR_DTC_CONNECT,
                std::string(p == MQ_MTS_TRANSACTION ? "MQ_MTS_TRANSACTION" : "MQ_XA_TRANSACTION") +
                    " needs a distributed transaction coordinator, and there is none on Linux: "
                    "use MQBeginTransaction (an internal transaction) or MQ_SINGLE_MESSAGE");
  }
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    if (r.live.count(p) == 0) {
      throw Error(MQ_ERROR_TRANSACTION_USAGE,
                  "pTransaction is not a transaction of MQBeginTransaction (or it was released)");
    }
    arg.tx = static_cast<TransactionObject*>(p)->transaction();
  }
  arg.tx->check_usable();
  return arg;
}

}  // namespace mqsec::abi

MQSEC_EXPORT HRESULT APIENTRY MQBeginTransaction(ITransaction** ppTransaction) {
  using namespace mqsec;
  return abi::guard("MQBeginTransaction", [&]() -> HRESULT {
    if (ppTransaction == nullptr) {
      throw Error(MQ_ERROR_INVALID_PARAMETER, "ppTransaction is NULL");
    }
    *ppTransaction = nullptr;
    auto* object = new abi::TransactionObject();
    {
      abi::Registry& r = abi::registry();
      std::lock_guard lock(r.mu);
      r.live.insert(object);
    }
    *ppTransaction = object;
    return MQ_OK;
  });
}
