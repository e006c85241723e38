// The queue half of MSMQ's API, as a thin adapter over the core (src/core/queue.hpp,
// admin.hpp): argument checks, MQQUEUEPROPS/MQMSGPROPS and wide strings to and from plain C++
// types, and the HANDLE <-> core object mapping (the tables are the runtime's).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "src/abi/async.hpp"
#include "src/abi/guard.hpp"
#include "src/abi/message_props.hpp"
#include "src/abi/queue_props.hpp"
#include "src/abi/transaction.hpp"
#include "src/abi/wide.hpp"
#include "src/core/admin.hpp"
#include "src/core/dead_letter.hpp"
#include "src/core/journal.hpp"
#include "src/core/locate.hpp"
#include "src/core/queue.hpp"
#include "src/core/queue_security.hpp"
#include "src/core/runtime.hpp"
#include "src/core/subqueue.hpp"

namespace {

using namespace mqsec;

// Queue and cursor handles live in their own tables; the tag in bits 32+ keeps a queue handle
// from being accepted as a cursor and vice versa (HANDLE is 64-bit here).
constexpr uintptr_t kQueueTag = uintptr_t{1} << 32;
constexpr uintptr_t kCursorTag = uintptr_t{2} << 32;

security::HandleTable<core::Queue>& queues() { return core::runtime().queues(); }
security::HandleTable<core::Cursor>& cursors() { return core::runtime().cursors(); }

template <typename T>
std::shared_ptr<T> lookup(security::HandleTable<T>& table, HANDLE h, uintptr_t tag) {
  uintptr_t v = reinterpret_cast<uintptr_t>(h);
  if ((v & ~uintptr_t{0xFFFFFFFF}) != tag) return nullptr;
  return table.get(static_cast<uint32_t>(v & 0xFFFFFFFF));
}

bool erase(HANDLE h, uintptr_t tag) {
  uintptr_t v = reinterpret_cast<uintptr_t>(h);
  if ((v & ~uintptr_t{0xFFFFFFFF}) != tag) return false;
  return tag == kQueueTag ? queues().erase(static_cast<uint32_t>(v))
                          : cursors().erase(static_cast<uint32_t>(v));
}

core::Destination destination_of_format(LPCWSTR format) {
  if (format == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "format name is NULL");
  const std::string utf8 = abi::wide_to_utf8(format, MQ_ERROR_ILLEGAL_FORMATNAME);
  // PUBLIC=<instance GUID>: a queue of this machine's store (there is no directory).
  return core::destination_of_any_format(utf8, core::runtime().config().store_path);
}

// Copies a format name into the caller's buffer: MQ_OK, or `too_small` with the needed length.
HRESULT copy_format(const std::string& format_utf8, LPWSTR out, LPDWORD len, HRESULT too_small) {
  const abi::WString format = abi::wide_from_utf8(format_utf8);
  DWORD needed = static_cast<DWORD>(format.size() + 1);
  DWORD capacity = *len;
  *len = needed;
  if (out == nullptr || capacity < needed) return too_small;
  abi::wide_copy(out, format);
  return MQ_OK;
}

// A public queue's path name ("<machine>\<name>") is not malformed, it needs Active Directory:
// throws MSMQ's workgroup answer for it; returns for any other path.
void refuse_public_path(LPCWSTR path) {
  std::string utf8;
  try {
    utf8 = abi::wide_to_utf8(path, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME);
  } catch (const Error&) {
    return;
  }
  if (core::is_public_path(utf8)) {
    throw Error(MQ_ERROR_UNSUPPORTED_OPERATION,
                "'" + utf8 + "' is a public queue's path name: public queues need Active " +
                    "Directory (use .\\private$\\NAME)");
  }
}
void refuse_public_path(MQQUEUEPROPS* props) {
  for (DWORD i = 0; i < props->cProp; ++i) {
    const MQPROPVARIANT& v = props->aPropVar[i];
    if (props->aPropID[i] == PROPID_Q_PATHNAME && v.vt == VT_LPWSTR && v.pwszVal != nullptr) {
      refuse_public_path(v.pwszVal);
    }
  }
}

HRESULT create_queue(const void* security, MQQUEUEPROPS* props, LPWSTR format_out,
                     LPDWORD format_len) {
  if (props == nullptr || format_len == nullptr) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "MQQUEUEPROPS or the format name length is NULL");
  }
  transport::QueueInfo q;
  bool have_path = false;
  HRESULT parsed = MQ_OK;
  try {
    parsed = abi::parse_queue_props(props, abi::QueuePropsUse::Create, q, &have_path);
  } catch (const Error& e) {
    if (e.code() == MQ_ERROR_ILLEGAL_QUEUE_PATHNAME) refuse_public_path(props);
    throw;
  }
  if (!have_path) throw Error(MQ_ERROR_INVALID_PARAMETER, "PROPID_Q_PATHNAME is required");
  const std::string format = core::format_name_of(q.name);
  core::create_queue(core::runtime().config().store_path, q, security);
  const HRESULT copied =
      copy_format(format, format_out, format_len, MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL);
  return copied != MQ_OK ? copied : parsed;
}

// The queue (of this machine) a format name names, as the store has it now.
transport::QueueInfo queue_of_format(LPCWSTR format, core::Destination* d_out) {
  core::Destination d = destination_of_format(format);
  std::optional<transport::QueueInfo> q = core::find_queue(core::runtime().config().store_path, d);
  if (!q) throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + d.queue + "' not found");
  if (d_out != nullptr) *d_out = d;
  return *q;
}

HRESULT get_queue_properties(LPCWSTR format, MQQUEUEPROPS* props) {
  core::Destination d = destination_of_format(format);
  abi::check_queue_props_get(props);
  // As MQSetQueueProperties: journals and dead-letter queues have no queue properties.
  if (core::is_journal_queue_name(d.queue) || core::is_dead_letter_queue_name(d.queue)) {
    throw Error(MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION,
                "a journal or dead-letter queue has no queue properties");
  }
  std::optional<transport::QueueInfo> q = core::find_queue(core::runtime().config().store_path, d);
  if (!q) throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + d.queue + "' not found");
  core::require_queue_rights(core::runtime().config().store_path, *q, MQSEC_GET_QUEUE_PROPERTIES,
                             "MQGetQueueProperties");
  return abi::fill_queue_props(props, *q, core::this_machine() + "\\private$\\" + q->name);
}

HRESULT set_queue_properties(LPCWSTR format, MQQUEUEPROPS* props) {
  core::Destination d;
  const transport::QueueInfo before = queue_of_format(format, &d);
  transport::QueueInfo q = before;
  const HRESULT parsed = abi::parse_queue_props(props, abi::QueuePropsUse::Set, q, nullptr);
  core::update_queue(core::runtime().config().store_path, d, before, q);
  return parsed;
}

HRESULT open_queue(LPCWSTR format, DWORD access, DWORD share, QUEUEHANDLE* out) {
  if (out == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "phQueue is NULL");
  *out = nullptr;
  if (access != MQ_RECEIVE_ACCESS && access != MQ_SEND_ACCESS && access != MQ_PEEK_ACCESS &&
      access != (MQ_RECEIVE_ACCESS | MQ_ADMIN_ACCESS) &&
      access != (MQ_PEEK_ACCESS | MQ_ADMIN_ACCESS) && access != MQ_MOVE_ACCESS) {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "dwAccess must be MQ_RECEIVE_ACCESS, MQ_SEND_ACCESS, MQ_PEEK_ACCESS or "
                "MQ_MOVE_ACCESS");
  }
  if (share != MQ_DENY_NONE && share != MQ_DENY_RECEIVE_SHARE) {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "dwShareMode must be MQ_DENY_NONE or MQ_DENY_RECEIVE_SHARE");
  }
  if (share == MQ_DENY_RECEIVE_SHARE && !(access & MQ_RECEIVE_ACCESS)) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "MQ_DENY_RECEIVE_SHARE needs MQ_RECEIVE_ACCESS");
  }
  core::Destination d = destination_of_format(format);
  core::Access a;
  a.send = (access & MQ_SEND_ACCESS) != 0;
  a.peek = (access & MQ_PEEK_ACCESS) != 0;
  a.receive = (access & MQ_RECEIVE_ACCESS) != 0;
  a.move = access == MQ_MOVE_ACCESS;
  auto q = core::Queue::open(d, a, share == MQ_DENY_RECEIVE_SHARE);
  uint32_t h = queues().insert(std::move(q));
  if (h == 0) throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "too many open queues");
  *out = reinterpret_cast<QUEUEHANDLE>(kQueueTag | h);
  return MQ_OK;
}

HRESULT send_message(QUEUEHANDLE hq, MQMSGPROPS* props, ITransaction* tx) {
  auto q = lookup(queues(), hq, kQueueTag);
  if (!q) throw Error(MQ_ERROR_INVALID_HANDLE, "not an open queue handle");
  q->check_send_access();
  const abi::TransactionArg t = abi::transaction_arg(tx);
  abi::SendRequest r = abi::parse_send(props);
  q->send(r, t.single, t.tx.get());
  if (r.msgid_out) std::memcpy(r.msgid_out->caub.pElems, r.envelope.msg_id.data(), 20);
  return r.overall;
}

// Synchronous receives answer at once; with a callback or an OVERLAPPED the same receive runs
// on a runtime thread (src/abi/async.hpp) and the call returns MQ_INFORMATION_OPERATION_PENDING
// once every argument has been checked. MSMQ documents lpOverlapped and fnReceiveCallback as
// NULL for transactions: an asynchronous receive in one is MQ_ERROR_TRANSACTION_USAGE.
void check_async_transaction(bool async, ITransaction* tx) {
  if (async && tx != nullptr) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE, "an asynchronous receive cannot be in a transaction");
  }
}

// Fills the caller's properties with a delivered message. fill_receive writes sizes and types
// into the caller's array; when another receiver wins the message the core offers the next
// one, filled from the caller's original capacities (taken when the call was made).
class Filler {
 public:
  explicit Filler(MQMSGPROPS* props) : props_(props) {
    if (props != nullptr) original_.assign(props->aPropVar, props->aPropVar + props->cProp);
  }
  HRESULT operator()(const core::Delivered& msg) {
    if (props_ == nullptr) return MQ_OK;
    undo();
    last_ = abi::fill_receive(props_, msg);
    return last_;
  }
  // The receive's outcome: when it failed although the last fill succeeded (another receiver
  // took that message, then the wait timed out; the removal failed), the caller did not get
  // that message, so its array is given back as it came and what the fill allocated is freed.
  // A failed fill (a short buffer) stays: it tells the caller the sizes it needs.
  HRESULT finish(HRESULT hr) {
    if (FAILED(hr) && SUCCEEDED(last_)) undo();
    return hr;
  }
  template <typename Receive>
  HRESULT run(Receive&& receive) {
    try {
      return finish(receive());
    } catch (...) {
      finish(MQ_ERROR);
      throw;
    }
  }

 private:
  void undo() {
    if (props_ == nullptr) return;
    abi::release_fill(props_, original_);
    std::copy(original_.begin(), original_.end(), props_->aPropVar);
    last_ = MQ_ERROR;
  }
  MQMSGPROPS* props_;
  std::vector<MQPROPVARIANT> original_;
  HRESULT last_ = MQ_ERROR;  // the last fill's result; MQ_ERROR: nothing filled
};

HRESULT receive_message(QUEUEHANDLE hq, DWORD timeout, DWORD action, MQMSGPROPS* props,
                        LPOVERLAPPED overlapped, PMQRECEIVECALLBACK callback, HANDLE hcursor,
                        ITransaction* tx) {
  auto q = lookup(queues(), hq, kQueueTag);
  if (!q) throw Error(MQ_ERROR_INVALID_HANDLE, "not an open queue handle");
  const bool async = overlapped != nullptr || callback != nullptr;
  check_async_transaction(async, tx);
  const abi::TransactionArg t = abi::transaction_arg(tx);
  core::Action act;
  switch (action) {
    case MQ_ACTION_RECEIVE:
      act = core::Action::Receive;
      break;
    case MQ_ACTION_PEEK_CURRENT:
      act = core::Action::PeekCurrent;
      break;
    case MQ_ACTION_PEEK_NEXT:
      act = core::Action::PeekNext;
      break;
    default:
      throw Error(MQ_ERROR_ILLEGAL_CURSOR_ACTION, "unknown receive action");
  }
  std::shared_ptr<core::Cursor> cursor;
  if (hcursor != nullptr) {
    cursor = lookup(cursors(), hcursor, kCursorTag);
    if (!cursor || cursor->queue.get() != q.get())
      throw Error(MQ_ERROR_INVALID_HANDLE, "not a cursor of this queue");
  } else if (act == core::Action::PeekNext) {
    throw Error(MQ_ERROR_ILLEGAL_CURSOR_ACTION, "MQ_ACTION_PEEK_NEXT needs a cursor");
  }
  q->check_receive_access(act);
  // MQ_SINGLE_MESSAGE receives one message of a transactional queue, as its own transaction.
  if (t.single && act == core::Action::Receive) q->check_transactional_queue();
  if (props != nullptr) abi::check_receive(props);
  std::optional<std::chrono::milliseconds> wait;
  if (timeout != INFINITE) wait = std::chrono::milliseconds(timeout);
  auto run = [q, act, wait, cursor, t, fill = Filler(props)](std::stop_token stop) mutable {
    return fill.run(
        [&] { return q->receive(act, wait, cursor.get(), std::ref(fill), t.tx.get(), stop); });
  };
  if (!async) return run({});
  return abi::start_async_receive(
      q, abi::AsyncTarget{hq, timeout, action, props, overlapped, callback, hcursor},
      std::move(run));
}

HRESULT receive_by_lookup_id(QUEUEHANDLE hq, ULONGLONG lookup_id, DWORD action, MQMSGPROPS* props,
                             LPOVERLAPPED overlapped, PMQRECEIVECALLBACK callback,
                             ITransaction* tx) {
  auto q = lookup(queues(), hq, kQueueTag);
  if (!q) throw Error(MQ_ERROR_INVALID_HANDLE, "not an open queue handle");
  const bool async = overlapped != nullptr || callback != nullptr;
  check_async_transaction(async, tx);
  const abi::TransactionArg t = abi::transaction_arg(tx);
  core::Lookup l;
  l.id = lookup_id;
  switch (action) {
    case MQ_LOOKUP_PEEK_CURRENT:
    case MQ_LOOKUP_RECEIVE_CURRENT:
    case MQ_LOOKUP_RECEIVE_ALLOW_PEEK:
      l.where = core::LookupWhere::Current;
      break;
    case MQ_LOOKUP_PEEK_NEXT:
    case MQ_LOOKUP_RECEIVE_NEXT:
      l.where = core::LookupWhere::Next;
      break;
    case MQ_LOOKUP_PEEK_PREV:
    case MQ_LOOKUP_RECEIVE_PREV:
      l.where = core::LookupWhere::Prev;
      break;
    case MQ_LOOKUP_PEEK_FIRST:
    case MQ_LOOKUP_RECEIVE_FIRST:
      l.where = core::LookupWhere::First;
      break;
    case MQ_LOOKUP_PEEK_LAST:
    case MQ_LOOKUP_RECEIVE_LAST:
      l.where = core::LookupWhere::Last;
      break;
    default:
      throw Error(MQ_ERROR_ILLEGAL_CURSOR_ACTION, "unknown lookup action");
  }
  l.take = (action & 0x00000020) != 0;  // the MQ_LOOKUP_RECEIVE_* bit
  if ((l.where == core::LookupWhere::First || l.where == core::LookupWhere::Last) &&
      lookup_id != 0) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "FIRST and LAST take the lookup id 0");
  }
  q->check_receive_access(l.take ? core::Action::Receive : core::Action::PeekCurrent);
  if (t.single && l.take) q->check_transactional_queue();  // as in receive_message
  if (props != nullptr) abi::check_receive(props);
  auto run = [q, l, t, fill = Filler(props)](std::stop_token) mutable {
    return fill.run([&] { return q->receive_by_lookup_id(l, std::ref(fill), t.tx.get()); });
  };
  if (!async) return run({});
  // The callback gets the action; MSMQ passes no timeout or cursor for a lookup.
  return abi::start_async_receive(
      q, abi::AsyncTarget{hq, 0, action, props, overlapped, callback, nullptr}, std::move(run));
}

}  // namespace

MQSEC_EXPORT HRESULT APIENTRY MQCreateQueue(PSECURITY_DESCRIPTOR pSecurityDescriptor,
                                            MQQUEUEPROPS* pQueueProps, LPWSTR lpwcsFormatName,
                                            LPDWORD lpdwFormatNameLength) {
  return abi::guard("MQCreateQueue", [&] {
    return create_queue(pSecurityDescriptor, pQueueProps, lpwcsFormatName, lpdwFormatNameLength);
  });
}

// Queue security descriptors (src/core/queue_security.hpp), self-relative only.
MQSEC_EXPORT HRESULT APIENTRY MQGetQueueSecurity(LPCWSTR lpwcsFormatName,
                                                 SECURITY_INFORMATION RequestedInformation,
                                                 PSECURITY_DESCRIPTOR pSecurityDescriptor,
                                                 DWORD nLength, LPDWORD lpnLengthNeeded) {
  return abi::guard("MQGetQueueSecurity", [&]() -> HRESULT {
    if (lpnLengthNeeded == nullptr) return MQ_ERROR_INVALID_PARAMETER;
    const core::Destination d = destination_of_format(lpwcsFormatName);
    const transport::Bytes sd =
        core::get_queue_security(core::runtime().config().store_path, d, RequestedInformation);
    *lpnLengthNeeded = static_cast<DWORD>(sd.size());
    if (pSecurityDescriptor == nullptr || nLength < sd.size()) {
      return MQ_ERROR_SECURITY_DESCRIPTOR_TOO_SMALL;
    }
    std::memcpy(pSecurityDescriptor, sd.data(), sd.size());
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQSetQueueSecurity(LPCWSTR lpwcsFormatName,
                                                 SECURITY_INFORMATION SecurityInformation,
                                                 PSECURITY_DESCRIPTOR pSecurityDescriptor) {
  return abi::guard("MQSetQueueSecurity", [&] {
    const core::Destination d = destination_of_format(lpwcsFormatName);
    core::set_queue_security(core::runtime().config().store_path, d, SecurityInformation,
                             pSecurityDescriptor);
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQDeleteQueue(LPCWSTR lpwcsFormatName) {
  return abi::guard("MQDeleteQueue", [&] {
    core::Destination d = destination_of_format(lpwcsFormatName);
    core::delete_queue(core::runtime().config().store_path, d);
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQOpenQueue(LPCWSTR lpwcsFormatName, DWORD dwAccess,
                                          DWORD dwShareMode, QUEUEHANDLE* phQueue) {
  return abi::guard("MQOpenQueue",
                    [&] { return open_queue(lpwcsFormatName, dwAccess, dwShareMode, phQueue); });
}

MQSEC_EXPORT HRESULT APIENTRY MQCloseQueue(QUEUEHANDLE hQueue) {
  return abi::guard("MQCloseQueue", [&] {
    auto q = lookup(queues(), hQueue, kQueueTag);
    if (!q) return MQ_ERROR_INVALID_HANDLE;
    q->flush();
    if (!erase(hQueue, kQueueTag)) return MQ_ERROR_INVALID_HANDLE;
    // Then (no new one can start) the pending asynchronous receives of the handle end with
    // MQ_ERROR_OPERATION_CANCELLED; on return none of them writes to the caller's memory.
    core::runtime().async_receives().cancel(q.get());
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQPathNameToFormatName(LPCWSTR lpwcsPathName, LPWSTR lpwcsFormatName,
                                                     LPDWORD lpdwFormatNameLength) {
  return abi::guard("MQPathNameToFormatName", [&]() -> HRESULT {
    if (lpwcsPathName == nullptr || lpdwFormatNameLength == nullptr)
      return MQ_ERROR_INVALID_PARAMETER;
    core::Destination d;
    try {
      d = core::destination_of_path(
          abi::wide_to_utf8(lpwcsPathName, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME));
    } catch (const Error& e) {
      if (e.code() == MQ_ERROR_ILLEGAL_QUEUE_PATHNAME) refuse_public_path(lpwcsPathName);
      throw;
    }
    if (!core::find_queue(core::runtime().config().store_path, d)) return MQ_ERROR_QUEUE_NOT_FOUND;
    return copy_format(core::format_name_of(d.queue), lpwcsFormatName, lpdwFormatNameLength,
                       MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQSendMessage(QUEUEHANDLE hDestinationQueue,
                                            MQMSGPROPS* pMessageProps, ITransaction* pTransaction) {
  return abi::guard("MQSendMessage",
                    [&] { return send_message(hDestinationQueue, pMessageProps, pTransaction); });
}

MQSEC_EXPORT HRESULT APIENTRY MQReceiveMessage(QUEUEHANDLE hSource, DWORD dwTimeout, DWORD dwAction,
                                               MQMSGPROPS* pMessageProps, LPOVERLAPPED lpOverlapped,
                                               PMQRECEIVECALLBACK fnReceiveCallback, HANDLE hCursor,
                                               ITransaction* pTransaction) {
  return abi::guard("MQReceiveMessage", [&] {
    return receive_message(hSource, dwTimeout, dwAction, pMessageProps, lpOverlapped,
                           fnReceiveCallback, hCursor, pTransaction);
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQReceiveMessageByLookupId(
    QUEUEHANDLE hSource, ULONGLONG ullLookupId, DWORD dwLookupAction, MQMSGPROPS* pMessageProps,
    LPOVERLAPPED lpOverlapped, PMQRECEIVECALLBACK fnReceiveCallback, ITransaction* pTransaction) {
  return abi::guard("MQReceiveMessageByLookupId", [&] {
    return receive_by_lookup_id(hSource, ullLookupId, dwLookupAction, pMessageProps, lpOverlapped,
                                fnReceiveCallback, pTransaction);
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQGetQueueProperties(LPCWSTR lpwcsFormatName,
                                                   MQQUEUEPROPS* pQueueProps) {
  return abi::guard("MQGetQueueProperties",
                    [&] { return get_queue_properties(lpwcsFormatName, pQueueProps); });
}

MQSEC_EXPORT HRESULT APIENTRY MQSetQueueProperties(LPCWSTR lpwcsFormatName,
                                                   MQQUEUEPROPS* pQueueProps) {
  return abi::guard("MQSetQueueProperties",
                    [&] { return set_queue_properties(lpwcsFormatName, pQueueProps); });
}

MQSEC_EXPORT HRESULT APIENTRY MQPurgeQueue(QUEUEHANDLE hQueue) {
  return abi::guard("MQPurgeQueue", [&]() -> HRESULT {
    auto q = lookup(queues(), hQueue, kQueueTag);
    if (!q) return MQ_ERROR_INVALID_HANDLE;
    q->purge();
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQHandleToFormatName(QUEUEHANDLE hQueue, LPWSTR lpwcsFormatName,
                                                   LPDWORD lpdwFormatNameLength) {
  return abi::guard("MQHandleToFormatName", [&]() -> HRESULT {
    if (lpdwFormatNameLength == nullptr) return MQ_ERROR_INVALID_PARAMETER;
    auto q = lookup(queues(), hQueue, kQueueTag);
    if (!q) return MQ_ERROR_INVALID_HANDLE;
    return copy_format(q->format_name(), lpwcsFormatName, lpdwFormatNameLength,
                       MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL);
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQCreateCursor(QUEUEHANDLE hQueue, PHANDLE phCursor) {
  return abi::guard("MQCreateCursor", [&]() -> HRESULT {
    if (phCursor == nullptr) return MQ_ERROR_INVALID_PARAMETER;
    auto q = lookup(queues(), hQueue, kQueueTag);
    if (!q) return MQ_ERROR_INVALID_HANDLE;
    uint32_t h = cursors().insert(std::make_shared<core::Cursor>(q));
    if (h == 0) return MQ_ERROR_INSUFFICIENT_RESOURCES;
    *phCursor = reinterpret_cast<HANDLE>(kCursorTag | h);
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQCloseCursor(HANDLE hCursor) {
  return abi::guard("MQCloseCursor",
                    [&] { return erase(hCursor, kCursorTag) ? MQ_OK : MQ_ERROR_INVALID_HANDLE; });
}

MQSEC_EXPORT VOID APIENTRY MQFreeMemory(PVOID pvMemory) {
  // mqsec never hands out memory the caller must free; MSMQ's contract is that what its
  // functions allocate goes back here, so this frees malloc'ed memory.
  std::free(pvMemory);
}

// Subqueues (src/core/subqueue.hpp).
MQSEC_EXPORT HRESULT APIENTRY MQMoveMessage(QUEUEHANDLE hSourceQueue, QUEUEHANDLE hDestinationQueue,
                                            ULONGLONG ullLookupId, ITransaction* pTransaction) {
  return abi::guard("MQMoveMessage", [&]() -> HRESULT {
    auto from = lookup(queues(), hSourceQueue, kQueueTag);
    auto to = lookup(queues(), hDestinationQueue, kQueueTag);
    if (!from || !to) return MQ_ERROR_INVALID_HANDLE;
    const abi::TransactionArg t = abi::transaction_arg(pTransaction);
    core::move_message(*from, *to, ullLookupId, t.single, t.tx.get());
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQMarkMessageRejected(QUEUEHANDLE hQueue, ULONGLONG ullLookupId) {
  return abi::guard("MQMarkMessageRejected", [&]() -> HRESULT {
    auto q = lookup(queues(), hQueue, kQueueTag);
    if (!q) return MQ_ERROR_INVALID_HANDLE;
    core::mark_message_rejected(*q, ullLookupId);
    return MQ_OK;
  });
}
