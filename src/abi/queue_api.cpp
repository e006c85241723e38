// The queue half of MSMQ's API: create/delete/open/close queues, send (signing on the token)
// and receive (verifying, rejecting what fails), cursors, MQFreeMemory.
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <span>

#include "src/abi/guard.hpp"
#include "src/abi/message_props.hpp"
#include "src/abi/runtime.hpp"
#include "src/abi/strings.hpp"
#include "src/core/destination.hpp"
#include "src/transport/local/real_ids.hpp"
#include "src/security/context.hpp"
#include "src/security/personal_store.hpp"

namespace {

using namespace mqsec;

// Queue and cursor handles live in their own tables; the tag in bits 32+ keeps a queue handle
// from being accepted as a cursor and vice versa (HANDLE is 64-bit here).
constexpr uintptr_t kQueueTag = uintptr_t{1} << 32;
constexpr uintptr_t kCursorTag = uintptr_t{2} << 32;

struct OpenQueue {
  std::string name;
  int64_t id = 0;
  DWORD access = 0;
  std::filesystem::path dir;
  transport::local::Store* store = nullptr;
  transport::local::BatchWriter* writer = nullptr;       // express messages of this store
  transport::local::BatchWriter* recoverable = nullptr;  // recoverable ones (group commit with fsync)
  std::atomic<pid_t> pid{0};                  // the process the pointers above belong to
  std::mutex refresh_mu;

  // A handle inherited across fork() must use the child's own store and writers.
  void bind_to_this_process() {
    if (pid.load(std::memory_order_acquire) == getpid()) return;
    std::lock_guard lock(refresh_mu);
    if (pid.load() == getpid()) return;
    store = &abi::store_at(dir);
    writer = &abi::express_writer_at(dir);
    recoverable = &abi::recoverable_writer_at(dir);
    pid.store(getpid(), std::memory_order_release);
  }
  bool authenticate = false;
  bool allow_weak_hash = false;
  // What receives from this handle demand (system config and the queue's own settings, read
  // when the queue was opened).
  security::TrustRequire require = security::TrustRequire::Signature;
  std::shared_ptr<const security::TrustStore> trust;  // null: no [trust] anchors
  std::filesystem::path system_registry;
  std::vector<security::AuthorizedSigner> signers;
  int64_t max_clock_skew_seconds = 300;
  int64_t replay_window_seconds = 0;
  // Only signed messages are accepted: PROPID_Q_AUTHENTICATE, or the queue's own trust
  // demand or authorized signers.
  bool require_signed = false;
  uint64_t max_message_body = 4 * 1024 * 1024;  // [limits] max-message-body
  transport::RejectionBounds rejection_bounds;      // [limits] rejected-*
  int lock_fd = -1;                             // flock()ed for share modes
  ~OpenQueue() {
    if (lock_fd >= 0) close(lock_fd);
  }
};

struct Cursor {
  std::shared_ptr<OpenQueue> queue;
  std::mutex mu;
  bool positioned = false;
  int priority = 0;
  int64_t seq = 0;
};

security::HandleTable<OpenQueue>& queues() {
  static auto* t = new security::HandleTable<OpenQueue>();
  return *t;
}
security::HandleTable<Cursor>& cursors() {
  static auto* t = new security::HandleTable<Cursor>();
  return *t;
}
security::Verifier& verifier() {
  static auto* v = new security::Verifier();
  return *v;
}

template <typename T>
std::shared_ptr<T> lookup(security::HandleTable<T>& table, HANDLE h, uintptr_t tag) {
  uintptr_t v = reinterpret_cast<uintptr_t>(h);
  if ((v & ~uintptr_t{0xFFFFFFFF}) != tag) return nullptr;
  return table.get(static_cast<uint32_t>(v & 0xFFFFFFFF));
}

security::SystemConfig config() {
  try {
    return security::load_system_config();
  } catch (const security::ConfigError& e) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE, std::string("system configuration: ") + e.what());
  }
}

transport::RejectionBounds rejection_bounds(const security::LimitsConfig& l) {
  transport::RejectionBounds b;
  b.max_count = l.rejected_max_count;
  b.max_bytes = l.rejected_max_bytes;
  b.max_age_seconds = l.rejected_max_age_seconds;
  b.body_prefix = l.rejected_body_prefix;
  return b;
}

// Opens (creating it with mode 0600) <store>/locks/<id>.lock without following links, as the
// process's user (store files never belong to an impersonated user).
int open_lock_file(const std::filesystem::path& store_dir, int64_t queue_id) {
  transport::local::RealFsIds real_ids;
  const std::filesystem::path dir = store_dir / "locks";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "cannot create " + dir.string() + ": " + std::strerror(errno));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) {
    throw Error(
        MQ_ERROR_SERVICE_NOT_AVAILABLE,
        "cannot open " + dir.string() + " (a directory, not a link): " + std::strerror(errno));
  }
  const std::string name = std::to_string(queue_id) + ".lock";
  const int fd = ::openat(dfd, name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  const int saved = errno;
  ::close(dfd);
  if (fd < 0) {
    throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                "cannot open " + (dir / name).string() + ": " + std::strerror(saved));
  }
  return fd;
}

// The message's signed destination ("DIRECT=OS:<host>\private$\<name>") names queue `name`.
// Only the queue part counts: the host is the sender's view and differs for remote queues.
bool destined_for(const security::Envelope& e, const std::string& name) {
  std::string dest;
  try {
    dest = core::queue_part_of_format(abi::utf16_to_utf8(e.dest_queue));
  } catch (const std::exception&) {
    return false;
  }
  return !dest.empty() && dest == name;
}

std::string queue_of_format(LPCWSTR format) {
  if (format == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "format name is NULL");
  return core::queue_from_format(abi::to_utf8(format, MQ_ERROR_ILLEGAL_FORMATNAME));
}

// A fresh MSMQ message id: a per-process random 16-byte GUID and a 32-bit counter.
// Message ids: a per-process random GUID and an atomic counter (no lock on the send path).
// A forked child draws a new GUID (pthread_atfork), so parent and child never share ids.
struct MessageIds {
  std::array<uint8_t, 16> guid{};
  std::atomic<uint32_t> counter{0};
  void renew() {
    std::random_device rd;
    for (auto& b : guid) b = static_cast<uint8_t>(rd());
    counter = 0;
  }
};
MessageIds& message_ids() {
  static MessageIds* ids = [] {
    auto* m = new MessageIds();
    m->renew();
    pthread_atfork(nullptr, nullptr, [] { message_ids().renew(); });
    return m;
  }();
  return *ids;
}

std::array<uint8_t, 20> new_message_id() {
  MessageIds& ids = message_ids();
  uint32_t n = ++ids.counter;
  std::array<uint8_t, 20> id{};
  std::memcpy(id.data(), ids.guid.data(), 16);
  std::memcpy(id.data() + 16, &n, 4);
  return id;
}

}  // namespace

namespace {

HRESULT create_queue(MQQUEUEPROPS* props, LPWSTR format_out, LPDWORD format_len) {
  if (props == nullptr || format_len == nullptr) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "MQQUEUEPROPS or the format name length is NULL");
  }
  if (props->cProp > 64 || (props->cProp > 0 && (!props->aPropID || !props->aPropVar))) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "malformed MQQUEUEPROPS");
  }
  transport::QueueInfo q;
  bool have_path = false;
  for (DWORD i = 0; i < props->cProp; ++i) {
    MQPROPVARIANT& v = props->aPropVar[i];
    auto bad = [&](HRESULT code, const std::string& why) {
      if (props->aStatus) props->aStatus[i] = code;
      throw Error(code, "queue property " + std::to_string(props->aPropID[i]) + ": " + why);
    };
    switch (props->aPropID[i]) {
      case PROPID_Q_PATHNAME:
        if (v.vt != VT_LPWSTR) bad(MQ_ERROR_ILLEGAL_PROPERTY_VT, "PATHNAME is VT_LPWSTR");
        if (v.pwszVal == nullptr) bad(MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, "NULL path name");
        q.name = core::queue_from_path(abi::to_utf8(v.pwszVal, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME));
        have_path = true;
        break;
      case PROPID_Q_LABEL:
        if (v.vt != VT_LPWSTR) bad(MQ_ERROR_ILLEGAL_PROPERTY_VT, "LABEL is VT_LPWSTR");
        if (v.pwszVal == nullptr) bad(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "NULL label");
        if (std::wcslen(v.pwszVal) > MQ_MAX_Q_LABEL_LEN) {
          bad(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "queue label over 124 characters");
        }
        q.label = abi::to_utf8(v.pwszVal, MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
        break;
      case PROPID_Q_AUTHENTICATE:
        if (v.vt != VT_UI1) bad(MQ_ERROR_ILLEGAL_PROPERTY_VT, "AUTHENTICATE is VT_UI1");
        if (v.bVal > MQ_AUTHENTICATE)
          bad(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "AUTHENTICATE is 0 or 1");
        q.authenticate = v.bVal == MQ_AUTHENTICATE;
        break;
      case PROPID_Q_TRANSACTION:
        if (v.vt != VT_UI1) bad(MQ_ERROR_ILLEGAL_PROPERTY_VT, "TRANSACTION is VT_UI1");
        if (v.bVal > MQ_TRANSACTIONAL)
          bad(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "TRANSACTION is 0 or 1");
        q.transactional = v.bVal == MQ_TRANSACTIONAL;
        break;
      default:
        bad(MQ_ERROR_ILLEGAL_PROPID, "not a queue property mqsec supports");
    }
  }
  if (!have_path) throw Error(MQ_ERROR_INVALID_PARAMETER, "PROPID_Q_PATHNAME is required");
  std::wstring format = abi::from_utf8(core::format_name_of(q.name));
  auto cfg = config();
  abi::store_at(cfg.store_path).create_queue(q);
  DWORD needed = static_cast<DWORD>(format.size() + 1);
  DWORD capacity = *format_len;
  *format_len = needed;
  if (format_out == nullptr || capacity < needed) return MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL;
  std::wmemcpy(format_out, format.c_str(), needed);
  return MQ_OK;
}

HRESULT open_queue(LPCWSTR format, DWORD access, DWORD share, QUEUEHANDLE* out) {
  if (out == nullptr) throw Error(MQ_ERROR_INVALID_PARAMETER, "phQueue is NULL");
  *out = nullptr;
  if (access != MQ_RECEIVE_ACCESS && access != MQ_SEND_ACCESS && access != MQ_PEEK_ACCESS &&
      access != (MQ_RECEIVE_ACCESS | MQ_ADMIN_ACCESS) &&
      access != (MQ_PEEK_ACCESS | MQ_ADMIN_ACCESS)) {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "dwAccess must be MQ_RECEIVE_ACCESS, MQ_SEND_ACCESS or MQ_PEEK_ACCESS");
  }
  if (share != MQ_DENY_NONE && share != MQ_DENY_RECEIVE_SHARE) {
    throw Error(MQ_ERROR_INVALID_PARAMETER,
                "dwShareMode must be MQ_DENY_NONE or MQ_DENY_RECEIVE_SHARE");
  }
  if (share == MQ_DENY_RECEIVE_SHARE && !(access & MQ_RECEIVE_ACCESS)) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "MQ_DENY_RECEIVE_SHARE needs MQ_RECEIVE_ACCESS");
  }
  std::string name = queue_of_format(format);
  auto cfg = config();
  auto q = std::make_shared<OpenQueue>();
  q->dir = cfg.store_path;
  q->bind_to_this_process();
  auto info = q->store->find_queue(name);
  if (!info) throw Error(MQ_ERROR_QUEUE_NOT_FOUND, "queue '" + name + "' does not exist");
  q->name = name;
  q->id = info->id;
  q->access = access;
  q->authenticate = info->authenticate;
  q->allow_weak_hash = cfg.allow_weak_hash;
  q->require = cfg.trust.effective_require();
  if (!info->trust.empty()) {
    auto own = security::parse_trust_require(info->trust);
    if (!own) {
      throw Error(MQ_ERROR_SERVICE_NOT_AVAILABLE,
                  "queue '" + name + "' has an unknown trust setting '" + info->trust + "'");
    }
    q->require = std::max(q->require, *own);
  }
  // Only receivers verify: a sender needs no anchors (and must not fail when they are missing).
  if (!cfg.trust.anchors.empty() && (access & (MQ_RECEIVE_ACCESS | MQ_PEEK_ACCESS))) {
    q->trust = security::trust_store_for(cfg.trust);
  }
  q->system_registry = cfg.trust.registry;
  for (const std::string& s : info->signer_subjects) q->signers.push_back({s, {}});
  for (const std::string& s : info->signer_sids) q->signers.push_back({{}, s});
  q->max_clock_skew_seconds = cfg.trust.max_clock_skew_seconds;
  q->replay_window_seconds = cfg.trust.replay_window_seconds;
  q->require_signed = info->authenticate || !info->trust.empty() || !q->signers.empty();
  q->max_message_body = cfg.limits.max_message_body;
  q->rejection_bounds = rejection_bounds(cfg.limits);
  if (access & MQ_RECEIVE_ACCESS) {
    // Receivers hold a shared lock on the queue's lock file; MQ_DENY_RECEIVE_SHARE an
    // exclusive one. flock() works across processes and between handles of one process.
    q->lock_fd = open_lock_file(cfg.store_path, info->id);
    int how = (share == MQ_DENY_RECEIVE_SHARE ? LOCK_EX : LOCK_SH) | LOCK_NB;
    if (flock(q->lock_fd, how) != 0) {
      throw Error(MQ_ERROR_SHARING_VIOLATION,
                  "queue '" + name + "' is opened with MQ_DENY_RECEIVE_SHARE elsewhere");
    }
  }
  uint32_t h = queues().insert(std::move(q));
  if (h == 0) throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES, "too many open queues");
  *out = reinterpret_cast<QUEUEHANDLE>(kQueueTag | h);
  return MQ_OK;
}

// The security context a send uses: the caller's, unless the message names another
// certificate (MSMQ then ignores the context), else a transient one (freed after the send).
std::shared_ptr<security::SecurityContext> context_for(const abi::SendRequest& r) {
  if (r.context) {
    auto ctx = security::context_table().get(*r.context);
    if (!ctx) {
      throw Error(MQ_ERROR_BAD_SECURITY_CONTEXT,
                  "PROPID_M_SECURITY_CONTEXT is not a live security context");
    }
    if (r.sender_cert.empty() || r.sender_cert == ctx->certificate()) return ctx;
  }
  return security::acquire_context(r.sender_cert);
}

HRESULT send_message(QUEUEHANDLE hq, MQMSGPROPS* props, ITransaction* tx) {
  auto q = lookup(queues(), hq, kQueueTag);
  if (!q) throw Error(MQ_ERROR_INVALID_HANDLE, "not an open queue handle");
  q->bind_to_this_process();
  if (!(q->access & MQ_SEND_ACCESS))
    throw Error(MQ_ERROR_ACCESS_DENIED, "queue not opened for sending");
  if (tx != nullptr && tx != MQ_SINGLE_MESSAGE) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                "only MQ_NO_TRANSACTION and MQ_SINGLE_MESSAGE are supported");
  }
  abi::SendRequest r = abi::parse_send(props);
  security::Envelope& e = r.envelope;
  if (e.body.size() > q->max_message_body) {
    // MSMQ answers a message over its 4 MB limit with MQ_ERROR_INSUFFICIENT_RESOURCES.
    throw Error(MQ_ERROR_INSUFFICIENT_RESOURCES,
                "message body of " + std::to_string(e.body.size()) +
                    " bytes is larger than the limit of " + std::to_string(q->max_message_body) +
                    " bytes ([limits] max-message-body)");
  }
  e.msg_id = new_message_id();
  e.sent_time = static_cast<uint64_t>(std::time(nullptr));
  e.source_machine = abi::utf8_to_utf16(core::local_host());
  e.dest_queue = abi::utf8_to_utf16(core::format_name_of(q->name));
  if (e.auth_level != MQMSG_AUTH_LEVEL_NONE) {
    auto ctx = context_for(r);
    security::sign_envelope(e, *ctx, r.hash_alg, q->allow_weak_hash, r.attach_sid);
  } else if (r.context && !security::context_table().get(*r.context)) {
    throw Error(MQ_ERROR_BAD_SECURITY_CONTEXT,
                "PROPID_M_SECURITY_CONTEXT is not a live security context");
  }
  security::Bytes bytes = security::encode(e);
  if (e.delivery == MQMSG_DELIVERY_EXPRESS && tx == nullptr) {
    q->writer->push(q->id, e.priority, std::move(bytes));  // group-committed in the background
  } else {
    q->writer->flush();  // keep this sender's arrival order
    q->recoverable->push_and_wait(q->id, e.priority, std::move(bytes));  // on disk on return
  }
  if (r.msgid_out) std::memcpy(r.msgid_out->caub.pElems, e.msg_id.data(), 20);
  return r.overall;
}

// Rejects a message that failed arrival checks: out of the queue, into the audit record,
// and a NACK to the admin queue when the sender asked for one.
// `kind` is the machine-readable reason (Verdict::kind, "malformed", "unsigned", "replay",
// "wrong-queue", "too-large"). `removed`: the caller already deleted the row.
void reject(OpenQueue& q, const transport::StoredMessage& m, const security::Envelope* e,
            const std::string& kind, const std::string& reason, bool removed = false) {
  if (!removed && !q.store->remove(q.id, m.seq)) return;  // another receiver dealt with it
  log(LogLevel::Warning, "rejected message " + std::to_string(m.seq) + " of queue '" + q.name +
                             "': " + reason + " [" + kind + "]");
  q.store->record_rejection(q.name, kind, reason, m.envelope, q.rejection_bounds);
  if (e == nullptr || !(e->acknowledge & MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL) ||
      e->admin_queue.empty()) {
    return;
  }
  try {
    std::string admin = core::queue_from_format(abi::utf16_to_utf8(e->admin_queue));
    auto info = q.store->find_queue(admin);
    if (!info) return;
    security::Envelope nack;
    nack.msg_class = MQMSG_CLASS_NACK_BAD_SIGNATURE;
    nack.msg_id = new_message_id();
    nack.correlation_id = e->msg_id;
    nack.label = e->label;
    nack.body = e->body;
    nack.app_specific = e->app_specific;
    nack.dest_queue = e->dest_queue;
    nack.source_machine = abi::utf8_to_utf16(core::local_host());
    nack.sent_time = static_cast<uint64_t>(std::time(nullptr));
    q.store->append(info->id, e->priority, security::encode(nack), true);
  } catch (const std::exception& ex) {
    log(LogLevel::Warning, std::string("could not send the NACK: ") + ex.what());
  }
}

HRESULT receive_message(QUEUEHANDLE hq, DWORD timeout, DWORD action, MQMSGPROPS* props,
                        LPOVERLAPPED overlapped, PMQRECEIVECALLBACK callback, HANDLE hcursor,
                        ITransaction* tx) {
  auto q = lookup(queues(), hq, kQueueTag);
  if (!q) throw Error(MQ_ERROR_INVALID_HANDLE, "not an open queue handle");
  q->bind_to_this_process();
  if (overlapped != nullptr || callback != nullptr) {
    throw Error(MQ_ERROR_INVALID_PARAMETER, "asynchronous receive is not supported yet");
  }
  if (tx != nullptr && tx != MQ_SINGLE_MESSAGE) {
    throw Error(MQ_ERROR_TRANSACTION_USAGE,
                "only MQ_NO_TRANSACTION and MQ_SINGLE_MESSAGE are supported");
  }
  if (action != MQ_ACTION_RECEIVE && action != MQ_ACTION_PEEK_CURRENT &&
      action != MQ_ACTION_PEEK_NEXT) {
    throw Error(MQ_ERROR_ILLEGAL_CURSOR_ACTION, "unknown receive action");
  }
  std::shared_ptr<Cursor> cursor;
  if (hcursor != nullptr) {
    cursor = lookup(cursors(), hcursor, kCursorTag);
    if (!cursor || cursor->queue.get() != q.get())
      throw Error(MQ_ERROR_INVALID_HANDLE, "not a cursor of this queue");
  } else if (action == MQ_ACTION_PEEK_NEXT) {
    throw Error(MQ_ERROR_ILLEGAL_CURSOR_ACTION, "MQ_ACTION_PEEK_NEXT needs a cursor");
  }
  const bool take = action == MQ_ACTION_RECEIVE;
  if (take ? !(q->access & MQ_RECEIVE_ACCESS)
           : !(q->access & (MQ_PEEK_ACCESS | MQ_RECEIVE_ACCESS))) {
    throw Error(MQ_ERROR_ACCESS_DENIED, "queue not opened for this kind of receive");
  }
  if (props != nullptr) abi::check_receive(props);
  q->writer->flush();  // this process's express messages are visible to its own receivers
  // fill_receive writes sizes and types into the caller's array; when another receiver wins
  // the message we try the next one with the caller's original capacities.
  std::vector<MQPROPVARIANT> original;
  if (props != nullptr) original.assign(props->aPropVar, props->aPropVar + props->cProp);

  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout);
  std::unique_lock<std::mutex> cursor_lock;
  if (cursor) cursor_lock = std::unique_lock(cursor->mu);
  bool advance = action == MQ_ACTION_PEEK_NEXT;
  auto candidate = [&]() -> std::optional<transport::StoredMessage> {
    if (cursor && cursor->positioned) {
      auto m = advance ? q->store->next_after(q->id, cursor->priority, cursor->seq)
                       : q->store->get(q->id, cursor->seq);
      if (!m && !advance) m = q->store->next_after(q->id, cursor->priority, cursor->seq);
      return m;
    }
    return q->store->first(q->id);
  };
  for (;;) {
    std::optional<transport::StoredMessage> m = candidate();
    uint64_t seen = 0;
    if (!m) {
      // Read the change counter, then look once more: a message committed in between is
      // either seen now or changes the counter we wait on.
      seen = q->store->version();
      m = candidate();
    }
    if (m) {
      if (cursor) {
        cursor->positioned = true;
        cursor->priority = m->priority;
        cursor->seq = m->seq;
        advance = false;
      }
      if (m->priority == transport::kMalformedPriority) {
        // Only a direct write to the store makes such a row (senders store the envelope's
        // priority, 0..7).
        reject(*q, *m, nullptr, "malformed", "the stored priority is not an integer 0..7");
        continue;
      }
      security::Envelope e;
      try {
        e = security::decode(m->envelope);
      } catch (const security::EnvelopeError& ex) {
        reject(*q, *m, nullptr, "malformed", std::string("malformed envelope: ") + ex.what());
        continue;
      }
      if (e.body.size() > q->max_message_body) {
        reject(*q, *m, &e, "too-large",
               "message body of " + std::to_string(e.body.size()) +
                   " bytes is larger than the limit of " + std::to_string(q->max_message_body) +
                   " bytes ([limits] max-message-body)");
        continue;
      }
      security::VerifyPolicy policy;
      policy.now = std::time(nullptr);
      policy.allow_weak = q->allow_weak_hash;
      policy.require = q->require;
      policy.trust = q->trust.get();
      policy.system_registry = [&](const security::Bytes& digest) {
        return abi::system_registered_sid(q->system_registry, digest);
      };
      policy.user_registry = [&](const security::Bytes& digest) {
        return abi::registered_sid(*q->store, digest);
      };
      policy.signers = q->signers;
      policy.max_clock_skew_seconds = q->max_clock_skew_seconds;
      policy.replay_window_seconds = q->replay_window_seconds;
      security::Verdict vd = verifier().verify(e, policy);
      if (!vd.ok) {
        reject(*q, *m, &e, vd.kind.empty() ? "signature" : vd.kind, vd.reason);
        continue;
      }
      if (q->require_signed && !vd.signed_message) {
        reject(*q, *m, &e, "unsigned",
               "unauthenticated message on a queue that requires authentication");
        continue;
      }
      // The signature covers the destination: a signed message copied into another queue
      // (by anyone who can write the store) is not delivered from there.
      if (vd.signed_message && !destined_for(e, q->name)) {
        reject(*q, *m, &e, "wrong-queue",
               "replayed into another queue: signed for '" + abi::utf16_to_utf8(e.dest_queue) +
                   "', found in queue '" + q->name + "'");
        continue;
      }
      // The id comes from the decoded (for signed messages: verified) envelope, never from a
      // store column.
      const std::span<const uint8_t> msg_id(e.msg_id.data(), e.msg_id.size());
      const std::string replay_reason =
          "replayed message: its message id was already delivered from queue '" + q->name + "'";
      if (q->store->was_delivered(q->id, msg_id)) {
        reject(*q, *m, &e, "replay", replay_reason);
        continue;
      }
      HRESULT hr = MQ_OK;
      if (props != nullptr) {
        abi::Received rec{&e, &vd, m->arrived};
        hr = abi::fill_receive(props, rec);
        if (FAILED(hr)) return hr;  // buffers too small: the message stays
      }
      if (take) {
        const int64_t sent =
            static_cast<int64_t>(std::min<uint64_t>(e.sent_time, static_cast<uint64_t>(INT64_MAX)));
        const transport::Removal removal =
            q->store->remove_delivered(q->id, m->seq, msg_id, sent, q->replay_window_seconds);
        if (removal != transport::Removal::Removed) {
          if (props != nullptr) std::copy(original.begin(), original.end(), props->aPropVar);
          // Gone: another receiver won it. Replay: a copy with this id was delivered meanwhile.
          if (removal == transport::Removal::Replay) {
            reject(*q, *m, &e, "replay", replay_reason, /*removed=*/true);
          }
          continue;
        }
      }
      return hr;
    }
    auto now = std::chrono::steady_clock::now();
    if (timeout != INFINITE && now >= deadline) {
      throw Error(MQ_ERROR_IO_TIMEOUT, "no message arrived within the timeout");
    }
    auto wait = timeout == INFINITE
                    ? std::chrono::milliseconds(1000)
                    : std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    q->store->wait_for_change(seen, wait);
  }
}

}  // namespace

MQSEC_EXPORT HRESULT APIENTRY MQCreateQueue(PSECURITY_DESCRIPTOR, MQQUEUEPROPS* pQueueProps,
                                            LPWSTR lpwcsFormatName, LPDWORD lpdwFormatNameLength) {
  return abi::guard("MQCreateQueue", [&] {
    return create_queue(pQueueProps, lpwcsFormatName, lpdwFormatNameLength);
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQDeleteQueue(LPCWSTR lpwcsFormatName) {
  return abi::guard("MQDeleteQueue", [&] {
    std::string name = queue_of_format(lpwcsFormatName);
    abi::flush_express_writers();
    abi::store_at(config().store_path).delete_queue(name);
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
    if (auto q = lookup(queues(), hQueue, kQueueTag)) {
      q->bind_to_this_process();
      q->writer->flush();
    }
    uintptr_t v = reinterpret_cast<uintptr_t>(hQueue);
    if ((v & ~uintptr_t{0xFFFFFFFF}) != kQueueTag || !queues().erase(static_cast<uint32_t>(v))) {
      return MQ_ERROR_INVALID_HANDLE;
    }
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQPathNameToFormatName(LPCWSTR lpwcsPathName, LPWSTR lpwcsFormatName,
                                                     LPDWORD lpdwFormatNameLength) {
  return abi::guard("MQPathNameToFormatName", [&]() -> HRESULT {
    if (lpwcsPathName == nullptr || lpdwFormatNameLength == nullptr)
      return MQ_ERROR_INVALID_PARAMETER;
    std::string name =
        core::queue_from_path(abi::to_utf8(lpwcsPathName, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME));
    if (!abi::store_at(config().store_path).find_queue(name)) {
      return MQ_ERROR_QUEUE_NOT_FOUND;
    }
    std::wstring format = abi::from_utf8(core::format_name_of(name));
    DWORD needed = static_cast<DWORD>(format.size() + 1);
    DWORD capacity = *lpdwFormatNameLength;
    *lpdwFormatNameLength = needed;
    if (lpwcsFormatName == nullptr || capacity < needed)
      return MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL;
    std::wmemcpy(lpwcsFormatName, format.c_str(), needed);
    return MQ_OK;
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

MQSEC_EXPORT HRESULT APIENTRY MQCreateCursor(QUEUEHANDLE hQueue, PHANDLE phCursor) {
  return abi::guard("MQCreateCursor", [&]() -> HRESULT {
    if (phCursor == nullptr) return MQ_ERROR_INVALID_PARAMETER;
    auto q = lookup(queues(), hQueue, kQueueTag);
    if (!q) return MQ_ERROR_INVALID_HANDLE;
    auto c = std::make_shared<Cursor>();
    c->queue = q;
    uint32_t h = cursors().insert(std::move(c));
    if (h == 0) return MQ_ERROR_INSUFFICIENT_RESOURCES;
    *phCursor = reinterpret_cast<HANDLE>(kCursorTag | h);
    return MQ_OK;
  });
}

MQSEC_EXPORT HRESULT APIENTRY MQCloseCursor(HANDLE hCursor) {
  return abi::guard("MQCloseCursor", [&] {
    uintptr_t v = reinterpret_cast<uintptr_t>(hCursor);
    if ((v & ~uintptr_t{0xFFFFFFFF}) != kCursorTag || !cursors().erase(static_cast<uint32_t>(v))) {
      return MQ_ERROR_INVALID_HANDLE;
    }
    return MQ_OK;
  });
}

MQSEC_EXPORT VOID APIENTRY MQFreeMemory(PVOID pvMemory) {
  // mqsec never hands out memory the caller must free; MSMQ's contract is that what its
  // functions allocate goes back here, so this frees malloc'ed memory.
  std::free(pvMemory);
}
