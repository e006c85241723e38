// Asynchronous receive's completion, MSMQ's way: a callback called on a runtime thread, or an
// OVERLAPPED whose Internal takes the HRESULT (STATUS_PENDING until then) and whose hEvent is
// set; MQGetOverlappedResult; and the event objects (mqsec extension) an hEvent names on Linux.
#include <cstdint>

#include "src/abi/async.hpp"
#include "src/abi/guard.hpp"
#include "src/core/async_receive.hpp"
#include "src/core/runtime.hpp"

namespace {

using namespace mqsec;

constexpr uintptr_t kEventTag = uintptr_t{3} << 32;  // beside queue_api.cpp's queue and cursor tags
constexpr ULONG_PTR kStatusPending = 0x103;          // Windows' STATUS_PENDING

core::AsyncReceives& async() { return core::runtime().async_receives(); }

std::shared_ptr<core::Event> event_of(HANDLE h) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(h);
  if ((v & ~uintptr_t{0xFFFFFFFF}) != kEventTag) return nullptr;
  return async().events().get(static_cast<uint32_t>(v & 0xFFFFFFFF));
}

// The OVERLAPPED's Internal: written by the receive's thread, read by MQGetOverlappedResult
// on another.
void store_status(LPOVERLAPPED ov, ULONG_PTR v) {
  __atomic_store_n(&ov->Internal, v, __ATOMIC_RELEASE);
}
ULONG_PTR load_status(LPOVERLAPPED ov) { return __atomic_load_n(&ov->Internal, __ATOMIC_ACQUIRE); }

}  // namespace

namespace mqsec::abi {

HRESULT start_async_receive(const std::shared_ptr<core::Queue>& queue, const AsyncTarget& target,
                            std::function<HRESULT(std::stop_token)> receive) {
  std::shared_ptr<core::Event> event;
  const bool use_overlapped = target.callback == nullptr;  // with a callback: passed through
  if (use_overlapped && target.overlapped->hEvent != nullptr) {
    event = event_of(target.overlapped->hEvent);
    if (!event) {
      throw Error(MQ_ERROR_INVALID_PARAMETER,
                  "the OVERLAPPED's hEvent is not an event of MQSecCreateEvent (or NULL)");
    }
  }
  if (use_overlapped) {
    store_status(target.overlapped, kStatusPending);
    target.overlapped->InternalHigh = 0;
    if (event) async().reset(*event);
  }
  core::AsyncReceives::Work w;
  w.receive = std::move(receive);
  w.release = [target, event, use_overlapped](HRESULT hr) {
    if (!use_overlapped) return;
    // The event is held by reference: closing its handle meanwhile is harmless.
    store_status(target.overlapped, static_cast<ULONG_PTR>(static_cast<uint32_t>(hr)));
    if (event) async().set(*event);
  };
  w.notify = [target](HRESULT hr) {
    if (target.callback == nullptr) return;
    target.callback(hr, target.queue_handle, target.timeout, target.action, target.props,
                    target.overlapped, target.cursor_handle);
  };
  try {
    async().start(queue, std::move(w));
  } catch (...) {
    if (use_overlapped) store_status(target.overlapped, 0);
    throw;
  }
  return MQ_INFORMATION_OPERATION_PENDING;
}

}  // namespace mqsec::abi

MQSEC_EXPORT HRESULT APIENTRY MQGetOverlappedResult(LPOVERLAPPED lpOverlapped) {
  return abi::guard("MQGetOverlappedResult", [&]() -> HRESULT {
    if (lpOverlapped == nullptr) return MQ_ERROR_INVALID_PARAMETER;
    const ULONG_PTR status = load_status(lpOverlapped);
    if (status == kStatusPending) return MQ_INFORMATION_OPERATION_PENDING;
    return static_cast<HRESULT>(static_cast<uint32_t>(status));
  });
}

MQSEC_EXPORT HANDLE APIENTRY MQSecCreateEvent(BOOL bManualReset, BOOL bInitialState) {
  HANDLE out = nullptr;
  abi::guard("MQSecCreateEvent", [&]() -> HRESULT {
    const uint32_t h = async().events().insert(
        std::make_shared<core::Event>(bManualReset != FALSE, bInitialState != FALSE));
    if (h == 0) return MQ_ERROR_INSUFFICIENT_RESOURCES;
    out = reinterpret_cast<HANDLE>(kEventTag | h);
    return MQ_OK;
  });
  return out;
}

MQSEC_EXPORT BOOL APIENTRY MQSecSetEvent(HANDLE hEvent) {
  return abi::guard("MQSecSetEvent", [&]() -> HRESULT {
           auto e = event_of(hEvent);
           if (!e) return MQ_ERROR_INVALID_HANDLE;
           async().set(*e);
           return MQ_OK;
         }) == MQ_OK;
}

MQSEC_EXPORT BOOL APIENTRY MQSecResetEvent(HANDLE hEvent) {
  return abi::guard("MQSecResetEvent", [&]() -> HRESULT {
           auto e = event_of(hEvent);
           if (!e) return MQ_ERROR_INVALID_HANDLE;
           async().reset(*e);
           return MQ_OK;
         }) == MQ_OK;
}

MQSEC_EXPORT DWORD APIENTRY MQSecWaitForEvent(HANDLE hEvent, DWORD dwMilliseconds) {
  DWORD result = MQSEC_WAIT_FAILED;
  abi::guard("MQSecWaitForEvent", [&]() -> HRESULT {
    auto e = event_of(hEvent);
    if (!e) return MQ_ERROR_INVALID_HANDLE;
    std::optional<std::chrono::milliseconds> timeout;
    if (dwMilliseconds != INFINITE) timeout = std::chrono::milliseconds(dwMilliseconds);
    result = async().wait(*e, timeout) ? MQSEC_WAIT_OBJECT_0 : MQSEC_WAIT_TIMEOUT;
    return MQ_OK;
  });
  return result;
}

MQSEC_EXPORT BOOL APIENTRY MQSecCloseEvent(HANDLE hEvent) {
  return abi::guard("MQSecCloseEvent", [&]() -> HRESULT {
           const uintptr_t v = reinterpret_cast<uintptr_t>(hEvent);
           if ((v & ~uintptr_t{0xFFFFFFFF}) != kEventTag) return MQ_ERROR_INVALID_HANDLE;
           return async().events().erase(static_cast<uint32_t>(v & 0xFFFFFFFF))
                      ? MQ_OK
                      : MQ_ERROR_INVALID_HANDLE;
         }) == MQ_OK;
}
