// The queue verbs of `mqsec`: queue create|delete|list, send, receive, rejected.
// Every verb calls the application core (src/core), the same paths MSMQ's C API takes: a queue
// is found as MQPathNameToFormatName finds it, opened as MQOpenQueue opens it, a security
// context obtained as MQGetSecurityContextEx obtains it, and messages sent and received
// (verified, rejected) as MQSendMessage and MQReceiveMessage do; errors are reported under the
// names of those functions. `receive --export` rebuilds each message's envelope from the
// received fields and writes the exact signed bytes, so that a plain `openssl dgst -verify` can
// check a signature without mqsec (for a batch-signed message: the signed statement and the
// message's proof too, which scripts/verify-batch-proof.py checks).
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <cwchar>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/runtime.hpp"
#include "src/core/admin.hpp"
#include "src/core/expiry_sweep.hpp"
#include "src/core/hresult.hpp"
#include "src/core/queue.hpp"
#include "src/core/text.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/output.hpp"
#include "src/core/destination.hpp"
#include "src/core/forwarding.hpp"
#include "src/core/outgoing.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/identity.hpp"
#include "src/security/message_auth.hpp"

namespace mqsec::cli {
namespace {

// ---- calls into the core ---------------------------------------------------------------------

// Runs a call into the core as the C API runs it (core::hresult_of, under the name of the MSMQ
// function it stands for): an error becomes its HRESULT, and its text the thread's last error,
// which ReasonProbe reads.
template <typename F>
HRESULT call(const char* function, F&& body) {
  return core::hresult_of(function, [&]() -> HRESULT {
    body();
    return MQ_OK;
  });
}

// An open queue of the core; this process's express messages are committed when it closes.
class OpenQueue {
 public:
  explicit OpenQueue(std::shared_ptr<core::Queue> q) : q_(std::move(q)) {}
  OpenQueue(const OpenQueue&) = delete;
  OpenQueue& operator=(const OpenQueue&) = delete;
  ~OpenQueue() {
    call("MQCloseQueue", [&] { q_->flush(); });  // nothing to do about a failure at this point
  }
  core::Queue* operator->() const noexcept { return q_.get(); }
  core::Queue& operator*() const noexcept { return *q_; }

 private:
  std::shared_ptr<core::Queue> q_;
};

// Whether a queue argument is a path or format name ("hostb\private$\q",
// "DIRECT=OS:hostb\private$\q") rather than a local queue's bare name (which never has '\').
bool is_queue_path(const std::string& name) {
  return name.find('\\') != std::string::npos || name.find('=') != std::string::npos;
}

// The destination `name` gives: a local queue's bare name, or (paths_too) a path or format name
// that may name a queue on another machine (reached through the broker, docs/remote.md). A local
// queue must exist, else MQ_ERROR_QUEUE_NOT_FOUND; `function` names the MSMQ call in errors.
core::Destination resolve_destination(const std::string& name, const std::string& what,
                                      bool paths_too, const char* function) {
  const bool path = paths_too && is_queue_path(name);
  core::Destination d;
  ReasonProbe probe;
  HRESULT hr = core::hresult_of(function, [&]() -> HRESULT {
    if (!path) {
      d = core::destination_of_path(".\\private$\\" + name);
    } else {
      d = name.find('=') != std::string::npos ? core::destination_of_format(name)
                                              : core::destination_of_path(name);
      if (d.remote()) return MQ_OK;
    }
    return core::find_queue(core::runtime().config().store_path, d) ? MQ_OK
                                                                    : MQ_ERROR_QUEUE_NOT_FOUND;
  });
  if (hr == MQ_ERROR_QUEUE_NOT_FOUND) {
    throw Failure(what, "queue '" + name + "' does not exist", hr, default_hint(hr));
  }
  check_hr(hr, what, probe);
  return d;
}

// The destination of a local private queue (it must exist).
core::Destination destination_of(const std::string& name, const std::string& what) {
  return resolve_destination(name, what, false, "MQPathNameToFormatName");
}

// The destination of a send: a local queue's name, or a path or format name of any machine.
core::Destination send_destination(const std::string& name, const std::string& what) {
  return resolve_destination(name, what, true, "MQOpenQueue");
}

std::unique_ptr<OpenQueue> open_queue(const core::Destination& d, core::Access access,
                                      const std::string& what) {
  std::shared_ptr<core::Queue> q;
  ReasonProbe probe;
  check_hr(call("MQOpenQueue", [&] { q = core::Queue::open(d, access, false); }), what, probe);
  return std::make_unique<OpenQueue>(std::move(q));
}

std::string class_name(uint16_t c) {
  switch (c) {
    case MQMSG_CLASS_NORMAL:
      return "normal";
    case MQMSG_CLASS_REPORT:
      return "report";
    case MQMSG_CLASS_ACK_REACH_QUEUE:
      return "ACK_REACH_QUEUE";
    case MQMSG_CLASS_ACK_RECEIVE:
      return "ACK_RECEIVE";
    case MQMSG_CLASS_NACK_BAD_DST_Q:
      return "NACK_BAD_DST_Q";
    case MQMSG_CLASS_NACK_PURGED:
      return "NACK_PURGED";
    case MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT:
      return "NACK_REACH_QUEUE_TIMEOUT";
    case MQMSG_CLASS_NACK_Q_EXCEED_QUOTA:
      return "NACK_Q_EXCEED_QUOTA";
    case MQMSG_CLASS_NACK_ACCESS_DENIED:
      return "NACK_ACCESS_DENIED";
    case MQMSG_CLASS_NACK_HOP_COUNT_EXCEEDED:
      return "NACK_HOP_COUNT_EXCEEDED";
    case MQMSG_CLASS_NACK_BAD_SIGNATURE:
      return "NACK_BAD_SIGNATURE";
    case MQMSG_CLASS_NACK_BAD_ENCRYPTION:
      return "NACK_BAD_ENCRYPTION";
    case MQMSG_CLASS_NACK_COULD_NOT_ENCRYPT:
      return "NACK_COULD_NOT_ENCRYPT";
    default:
      return "unknown";
  }
}

std::string authenticated_name(uint8_t a) {
  switch (a) {
    case 0:
      return "not authenticated";
    case MQMSG_AUTHENTICATED_SIG10:
      return "MQMSG_AUTHENTICATED_SIG10";
    case MQMSG_AUTHENTICATED_SIG20:
      return "MQMSG_AUTHENTICATED_SIG20";
    case MQMSG_AUTHENTICATED_SIG30:
      return "MQMSG_AUTHENTICATED_SIG30";
    case MQMSG_AUTHENTICATED_SIGXML:
      return "MQMSG_AUTHENTICATED_SIGXML";
    default:
      return "unknown";
  }
}

// OpenSSL's name of a CALG_* hash ("" for none or unknown).
std::string hash_name(uint32_t calg) {
  switch (calg) {
    case CALG_SHA_256:
      return "sha256";
    case CALG_SHA_384:
      return "sha384";
    case CALG_SHA_512:
      return "sha512";
    case CALG_SHA1:
      return "sha1";
    case CALG_MD5:
      return "md5";
    default:
      return {};
  }
}

uint32_t calg_of(const std::string& name) {
  if (name == "sha384") return CALG_SHA_384;
  if (name == "sha512") return CALG_SHA_512;
  return CALG_SHA_256;
}

// ---- queue create / delete / list -----------------------------------------------------------

struct QueueCreateArgs {
  std::string name, label, trust;
  bool authenticate = false;
  std::vector<std::string> signers, signer_sids;
  bool has_policy() const { return !trust.empty() || !signers.empty() || !signer_sids.empty(); }
};

// A queue with a trust demand or authorized signers: created in the store directly, with its
// policy in the same row (MQCreateQueue has no property for them), so that no receiver ever
// sees the queue without its policy. The format name is the one MQCreateQueue returns.
std::string create_with_policy(const QueueCreateArgs& a, const std::string& what) {
  security::SystemConfig cfg = load_config_or_fail();
  transport::QueueInfo q;
  q.name = store_queue_name(a.name);
  if (core::from_utf8(a.label).size() > MQ_MAX_Q_LABEL_LEN) {
    throw Failure(what, "the label is longer than 124 characters", MQ_ERROR_ILLEGAL_PROPERTY_VALUE);
  }
  q.label = a.label;
  q.authenticate = true;  // --trust and --signer only make sense for signed messages
  if (!a.trust.empty()) {
    auto t = security::parse_trust_require(a.trust);
    if (!t) {  // CLI11 checked the spelling; this is the runtime's own parser agreeing
      throw Failure(what, "unknown trust level '" + a.trust + "'", MQ_ERROR_INVALID_PARAMETER);
    }
    q.trust = security::to_string(*t);
  }
  if (!a.signers.empty() && cfg.trust.anchors.empty()) {
    // Anyone can make a self-signed certificate with any subject: a subject names a signer
    // only in a certificate that chains to a CA the receiver trusts.
    throw Failure(what,
                  "--signer needs [trust] anchors in the system configuration (" +
                      security::system_config_path().string() +
                      "): a subject is only as trustworthy as the CA that issued the certificate",
                  MQ_ERROR_INVALID_PARAMETER,
                  "configure [trust] anchors, or name the signer by SID with --signer-sid");
  }
  for (const std::string& s : a.signers) q.signer_subjects.push_back(s);
  for (const std::string& s : a.signer_sids) {
    q.signer_sids.push_back(security::Sid::from_string(s).str());  // canonical form
  }
  try {
    core::create_queue(cfg.store_path, q);
  } catch (const Error& e) {
    if (e.code() == MQ_ERROR_QUEUE_EXISTS) {
      throw Failure(what, "a queue of that name exists already", e.code(), default_hint(e.code()));
    }
    throw Failure(what, e.what(), e.code(), default_hint(e.code()));
  }
  return core::format_name_of(q.name);
}

int run_queue_create(const QueueCreateArgs& a) {
  load_config_or_fail();
  store_queue_name(a.name);  // precise message for a bad name
  const std::string what = "create queue '" + a.name + "'";
  const bool authenticate = a.authenticate || a.has_policy();
  std::string format_text;
  if (a.has_policy()) {
    format_text = create_with_policy(a, what);
  } else {
    // The core's queue creation, as MQCreateQueue makes it (with PROPID_Q_LABEL when a label
    // is given, and PROPID_Q_AUTHENTICATE).
    ReasonProbe probe;
    HRESULT hr = call("MQCreateQueue", [&] {
      transport::QueueInfo q;
      q.name = core::queue_from_path(".\\private$\\" + a.name);
      if (core::from_utf8(a.label).size() > MQ_MAX_Q_LABEL_LEN) {
        throw Error(MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "queue property " +
                                                         std::to_string(PROPID_Q_LABEL) +
                                                         ": queue label over 124 characters");
      }
      q.label = a.label;
      q.authenticate = authenticate;
      format_text = core::create_queue(core::runtime().config().store_path, q);
    });
    if (hr == MQ_ERROR_QUEUE_EXISTS) {
      throw Failure(what, "a queue of that name exists already", hr, default_hint(hr));
    }
    check_hr(hr, what, probe);
  }
  std::cout << "created queue '" << store_queue_name(a.name) << "'\n"
            << "  format name:  " << format_text << '\n'
            << "  authenticate: "
            << (authenticate ? "yes (unsigned and badly signed messages are rejected)" : "no")
            << '\n';
  if (!a.trust.empty()) {
    std::cout << "  trust:        " << a.trust
              << " (or the system's [trust] require if stronger)\n";
  }
  for (const std::string& s : a.signers) std::cout << "  signer:       " << s << '\n';
  for (const std::string& s : a.signer_sids) {
    std::cout << "  signer SID:   " << security::Sid::from_string(s).str() << '\n';
  }
  if (!a.label.empty()) std::cout << "  label:        " << a.label << '\n';
  return kExitOk;
}

int run_queue_delete(const std::string& name) {
  load_config_or_fail();
  store_queue_name(name);
  const std::string what = "delete queue '" + name + "'";
  core::Destination d = destination_of(name, what);
  ReasonProbe probe;
  check_hr(
      call("MQDeleteQueue", [&] { core::delete_queue(core::runtime().config().store_path, d); }),
      what, probe);
  std::cout << "deleted queue '" << store_queue_name(name) << "' and its messages\n";
  return kExitOk;
}

int run_queue_expire() {
  security::SystemConfig cfg = load_config_or_fail();
  const std::string what = "expire the messages whose time to be received has passed";
  ReasonProbe probe;
  core::SweepCounts c;
  check_hr(call("the expiry sweep",
                [&] {
                  core::ExpirySweeper sweeper(cfg);
                  c = sweeper.sweep(static_cast<int64_t>(std::time(nullptr)));
                }),
           what, probe);
  std::cout << "expired " << c.expired << " message" << (c.expired == 1 ? "" : "s") << " of "
            << c.scanned << " in the store; " << c.pending
            << " with a time to be received still waiting\n";
  return kExitOk;
}

std::string json_strings(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    // Two appends rather than (i ? "," : "") + json_string(...): GCC 12 at -O3 reports that
    // operator+'s insert at the front may overlap (-Wrestrict), a false positive.
    if (i) out += ',';
    out += json_string(v[i]);
  }
  return out + "]";
}

int run_queue_list(bool json) {
  security::SystemConfig cfg = load_config_or_fail();
  std::error_code ec;
  if (!std::filesystem::exists(cfg.store_path / "mqsec.db", ec)) {
    if (json) {
      std::cout << "[]\n";
    } else {
      std::cout << "no queues (no store at " << cfg.store_path.string() << " yet)\n";
    }
    return kExitOk;
  }
  try {
    std::vector<core::QueueStatus> queues = core::list_queues(cfg.store_path);
    // Outgoing queues (messages for other machines) are listed apart, as MSMQ does.
    std::erase_if(queues, [](const core::QueueStatus& q) {
      return core::is_outgoing_queue_name(q.info.name);
    });
    const std::vector<core::OutgoingQueueInfo> outgoing =
        core::list_outgoing_queues(core::runtime().stores().store_at(cfg.store_path));
    const bool forwarder = !outgoing.empty() && core::forwarder_running(cfg.store_path);
    const char* state = forwarder ? "forwarder-running" : "waiting";
    const std::string system_trust = security::to_string(cfg.trust.effective_require());
    if (json) {
      std::ostringstream o;
      o << "[";
      for (size_t i = 0; i < queues.size(); ++i) {
        const transport::QueueInfo& q = queues[i].info;
        o << (i ? ",\n " : "") << "{\"kind\":\"private\",\"name\":" << json_string(q.name)
          << ",\"label\":" << json_string(q.label)
          << ",\"authenticate\":" << (q.authenticate ? "true" : "false")
          << ",\"transactional\":" << (q.transactional ? "true" : "false")
          << ",\"trust\":" << (q.trust.empty() ? "null" : json_string(q.trust))
          << ",\"system_trust\":" << json_string(system_trust)
          << ",\"signer_subjects\":" << json_strings(q.signer_subjects)
          << ",\"signer_sids\":" << json_strings(q.signer_sids)
          << ",\"messages\":" << queues[i].messages << "}";
      }
      for (size_t i = 0; i < outgoing.size(); ++i) {
        const core::OutgoingQueueInfo& q = outgoing[i];
        o << (i || !queues.empty() ? ",\n " : "")
          << "{\"kind\":\"outgoing\",\"name\":" << json_string(q.format_name)
          << ",\"machine\":" << json_string(q.destination.machine)
          << ",\"queue\":" << json_string(q.destination.queue) << ",\"messages\":" << q.backlog
          << ",\"state\":\"" << state << "\"}";
      }
      o << "]";
      std::cout << o.str() << '\n';
      return kExitOk;
    }
    if (queues.empty()) {
      std::cout << "no queues\n";
    } else {
      std::printf("%-24s %-12s %-16s %8s  %s\n", "NAME", "AUTHENTICATE", "TRUST", "MESSAGES",
                  "LABEL");
      for (const core::QueueStatus& status : queues) {
        const transport::QueueInfo& q = status.info;
        const std::string trust = q.trust.empty() ? "(system)" : q.trust;
        std::printf("%-24s %-12s %-16s %8zu  %s\n", q.name.c_str(), q.authenticate ? "yes" : "no",
                    trust.c_str(), status.messages, one_line(q.label).c_str());
        for (const std::string& s : q.signer_subjects) {
          std::printf("  signer:     %s\n", one_line(s).c_str());
        }
        for (const std::string& s : q.signer_sids) std::printf("  signer SID: %s\n", s.c_str());
      }
      std::printf("(system) = the system's [trust] require: %s\n", system_trust.c_str());
    }
    if (!outgoing.empty()) {
      std::printf("\noutgoing queues (messages for other machines):\n");
      std::printf("%-48s %8s  %s\n", "DESTINATION", "BACKLOG", "STATE");
      for (const core::OutgoingQueueInfo& q : outgoing) {
        std::printf("%-48s %8zu  %s\n", q.format_name.c_str(), q.backlog, state);
      }
      std::printf(forwarder ? "forwarder-running = a forwarder (mqsec agent or a sending process) "
                              "holds this store's forwarder lock\n"
                            : "waiting = no forwarder runs for this store (start mqsec agent)\n");
    }
  } catch (const Error& e) {
    throw Failure("list queues", e.what(), e.code(), default_hint(e.code()));
  }
  return kExitOk;
}

// ---- send ------------------------------------------------------------------------------------

struct SendArgs {
  std::string queue, body, file, label, cert, hash = "sha256", admin_queue;
  bool auth = false, recoverable = false, nack = false, batch = false;
  unsigned count = 1;
};

int run_send(const SendArgs& a) {
  security::SigningConfig signing;
  if (a.auth) {
    // the internal certificate is named by the profile; its [signing] applies (--batch)
    const security::UserSetup setup = resolve_user_or_fail(a.cert.empty());
    signing = setup.profile.signing.applied_to(setup.config.signing);
  } else {
    signing = load_config_or_fail().signing;
  }
  // [signing] batch-limit = 1: the administrator forbids batch signing on this machine.
  const bool batch = a.batch && signing.batch_limit > 1;
  if (a.batch && !batch) {
    std::cerr << "mqsec: batch signing is turned off on this machine ([signing] batch-limit = 1 "
                 "in the system configuration): each message is signed alone\n";
  }
  const std::string what = "send to queue '" + a.queue + "'";
  std::vector<uint8_t> body;
  if (!a.file.empty()) {
    body = read_file(a.file, "read the message body");
  } else {
    body.assign(a.body.begin(), a.body.end());
  }
  std::string admin;  // its format name
  if (!a.admin_queue.empty()) {
    const std::string admin_what = "admin queue '" + a.admin_queue + "'";
    if (is_queue_path(a.admin_queue)) {
      admin = core::format_name_of(send_destination(a.admin_queue, admin_what));
    } else {
      store_queue_name(a.admin_queue);
      admin = core::format_name_of(destination_of(a.admin_queue, admin_what).queue);
    }
  }

  core::Access access;
  access.send = true;
  if (!is_queue_path(a.queue)) store_queue_name(a.queue);
  std::unique_ptr<OpenQueue> q = open_queue(send_destination(a.queue, what), access, what);
  if (batch) {
    // --batch: the batch-signing pipeline with [signing]'s settings, or 1,000 messages and
    // 10 ms when the configuration does not batch.
    if (!signing.batching()) {
      signing.batch_max_messages = 1000;
      signing.batch_max_delay_ms = 10;
    }
    signing.batch_wait = false;
    (*q)->set_batching(signing);
  }
  const uint64_t signed_before = core::runtime().batch_signers().messages();
  const uint64_t signatures_before = core::runtime().batch_signers().signatures();

  // One context for all messages: the token lookup and login happen once, every message is
  // then one signature on the token.
  std::shared_ptr<security::SecurityContext> ctx;
  std::string signer;
  if (a.auth) {
    std::vector<uint8_t> der;
    if (!a.cert.empty()) der = read_certificate_file(a.cert);
    ReasonProbe probe;
    HRESULT hr = call("MQGetSecurityContextEx", [&] { ctx = security::acquire_context(der); });
    check_hr(hr, "MQGetSecurityContextEx", probe);
    signer = security::subject_string(ctx->x509()) + ", SID " + ctx->sid().str();
  }

  // The message, as MQSendMessage's properties would give it: PROPID_M_BODY, _LABEL,
  // _DELIVERY, _AUTH_LEVEL with the context and _HASH_ALG, _ADMIN_QUEUE, _ACKNOWLEDGE.
  core::Outgoing message;
  message.envelope.body = std::move(body);
  const std::wstring wide_label = core::from_utf8(a.label);
  message.envelope.label = core::utf8_to_utf16(a.label);
  if (a.recoverable) message.envelope.delivery = MQMSG_DELIVERY_RECOVERABLE;
  if (a.auth) {
    message.envelope.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
    message.signer = ctx;
    message.hash_alg = calg_of(a.hash);
  }
  if (!admin.empty()) message.envelope.admin_queue = core::utf8_to_utf16(admin);
  if (a.nack) message.envelope.acknowledge = MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL;

  unsigned sent = 0;
  for (; sent < a.count; ++sent) {
    ReasonProbe probe;
    HRESULT hr = call("MQSendMessage", [&] {
      if (wide_label.size() > MQ_MAX_MSG_LABEL_LEN) {
        throw Error(MQ_ERROR_LABEL_TOO_LONG,
                    "property " + std::to_string(PROPID_M_LABEL) + ": label over 250 characters");
      }
      core::Outgoing m = message;
      (*q)->send(m, (*q)->transactional());  // a transactional queue: one-message transaction
    });
    if (FAILED(hr)) {
      std::string reason = probe.reason(hr);
      if (a.count > 1)
        reason += " (" + std::to_string(sent) + " of " + std::to_string(a.count) + " sent)";
      throw Failure(what, reason, hr, default_hint(hr));
    }
  }
  uint64_t signatures = 0;
  if (batch && a.auth) {
    // Deferred signing: wait for the batches (MQCloseQueue does), then say what became of them.
    (*q)->flush();
    signatures = core::runtime().batch_signers().signatures() - signatures_before;
    const uint64_t signed_now = core::runtime().batch_signers().messages() - signed_before;
    if (signed_now < sent) {
      throw Failure(what,
                    std::to_string(sent - signed_now) + " of " + std::to_string(sent) +
                        " messages could not be signed and were not sent (recorded as "
                        "rejected, kind signing-failed; NACKed when asked)",
                    MQ_ERROR_CANNOT_SIGN_DATA_EX,
                    "see `mqsec rejected " + a.queue + "` and `mqsec doctor`");
    }
  }
  std::cout << "sent " << sent << (sent == 1 ? " message" : " messages") << " to '"
            << (is_queue_path(a.queue) ? a.queue : store_queue_name(a.queue)) << "'";
  if (a.auth) {
    std::cout << ", signed with " << a.hash << (signer.empty() ? "" : " by " + signer)
              << " (one security context";
    if (batch) {
      std::cout << ", " << signatures << " batch signature" << (signatures == 1 ? "" : "s");
    }
    std::cout << ")";
  } else {
    std::cout << ", not signed";
  }
  std::cout << (a.recoverable ? ", recoverable" : "") << '\n';
  return kExitOk;
}

// ---- receive ---------------------------------------------------------------------------------

struct ReceiveArgs {
  std::string queue, timeout = "0", export_dir;
  unsigned count = 1;
  bool json = false;
};

// One received message, with every property the envelope is made of.
struct Received {
  uint16_t msg_class = 0;
  std::array<uint8_t, 20> msg_id{}, correlation_id{};
  uint8_t priority = 0, delivery = 0, acknowledge = 0, journal = 0, authenticated = 0,
          confirmed = 0;
  uint32_t app_specific = 0, body_type = 0, sent = 0, arrived = 0, auth_level = 0, hash_alg = 0,
           sender_id_type = 0, trust = 0;
  std::vector<uint8_t> body, sender_id, cert, signature;
  std::u16string label, resp_queue, admin_queue, dest_queue;
  std::u16string source_machine;  // the sending machine's name, as signed
  security::BatchProof batch;     // a batch-signed message's proof (not an MSMQ property)
};

// Receives one message (the core's receive loop: verified, rejected when it fails, as
// MQReceiveMessage receives). Returns the HRESULT MQReceiveMessage would.
HRESULT receive_one(core::Queue& q, DWORD timeout, Received& m) {
  std::optional<std::chrono::milliseconds> wait;
  if (timeout != INFINITE) wait = std::chrono::milliseconds(timeout);
  return core::hresult_of("MQReceiveMessage", [&]() -> HRESULT {
    return q.receive(core::Action::Receive, wait, nullptr, [&](const core::Delivered& d) {
      const security::Envelope& e = *d.envelope;
      const security::Verdict& vd = *d.verdict;
      const bool verified = vd.signed_message && vd.ok;
      m.msg_class = e.msg_class;
      m.msg_id = e.msg_id;
      m.correlation_id = e.correlation_id;
      m.priority = e.priority;
      m.delivery = e.delivery;
      m.acknowledge = e.acknowledge;
      m.journal = e.journal;
      m.app_specific = e.app_specific;
      m.body = e.body;
      m.body_type = e.body_type;
      m.label = e.label;
      m.resp_queue = e.response_queue;
      m.admin_queue = e.admin_queue;
      m.dest_queue = e.dest_queue;
      m.source_machine = e.source_machine;
      m.sent = static_cast<uint32_t>(e.sent_time);
      m.arrived = static_cast<uint32_t>(d.arrived);
      m.auth_level = e.auth_level;
      m.authenticated = verified ? vd.authenticated_ex : 0;
      m.hash_alg = e.hash_alg;
      m.sender_id_type = e.sender_id_type;
      m.sender_id = e.sender_id;
      m.cert = e.sender_cert;
      m.signature = e.signature;
      m.batch = e.batch;
      m.confirmed = vd.sender_confirmed ? 1 : 0;
      m.trust = verified ? vd.trust : 0;
      return HRESULT{MQ_OK};
    });
  });
}

// The envelope the sender signed, rebuilt from the received properties. The signature scheme
// is not a message property: it follows from the certificate's key (for RSA, PKCS#1 v1.5 or
// PSS, whichever verifies). Throws Failure when no rebuild reproduces the signature.
security::Envelope rebuild_envelope(const Received& m, security::Verifier& verifier, unsigned n) {
  security::Envelope e;
  e.msg_class = m.msg_class;
  e.msg_id = m.msg_id;
  e.correlation_id = m.correlation_id;
  e.priority = m.priority;
  e.delivery = m.delivery;
  e.acknowledge = m.acknowledge;
  e.journal = m.journal;
  e.app_specific = m.app_specific;
  e.body_type = m.body_type;
  e.body = m.body;
  e.label = m.label;
  e.response_queue = m.resp_queue;
  e.admin_queue = m.admin_queue;
  e.dest_queue = m.dest_queue;
  e.source_machine = m.source_machine;
  e.sent_time = m.sent;
  e.auth_level = m.auth_level;
  e.hash_alg = m.hash_alg;
  e.sender_id_type = m.sender_id_type;
  e.sender_id = m.sender_id;
  e.sender_cert = m.cert;
  e.signature = m.signature;
  e.batch = m.batch;

  std::vector<security::SigScheme> candidates;
  security::X509Ptr cert = security::parse_der_strict(m.cert);
  EVP_PKEY* pub = cert ? X509_get0_pubkey(cert.get()) : nullptr;
  if (pub != nullptr && EVP_PKEY_is_a(pub, "EC") == 1) {
    candidates = {security::SigScheme::Ecdsa};
  } else if (pub != nullptr && EVP_PKEY_is_a(pub, "RSA") == 1) {
    candidates = {security::SigScheme::RsaPkcs1, security::SigScheme::RsaPss};
  }
  std::string last_reason = "the sender certificate's key is neither RSA nor EC";
  for (security::SigScheme s : candidates) {
    e.sig_scheme = s;
    // allow_weak: the receive already accepted the message; here we only reproduce it.
    security::Verdict v = verifier.verify(e, std::nullopt, std::time(nullptr), true);
    if (v.ok) return e;
    last_reason = v.reason;
  }
  throw Failure("export message " + std::to_string(n),
                "the envelope rebuilt from the received properties does not reproduce the "
                "signature: " +
                    last_reason,
                MQ_ERROR_FAIL_VERIFY_SIGNATURE_EX,
                "the message was received (it is no longer in the queue); please report this "
                "as a bug in mqsec");
}

void export_message(const Received& m, const std::filesystem::path& dir, unsigned n,
                    security::Verifier& verifier) {
  if (m.signature.empty()) {
    std::cerr << "mqsec: message " << n << " is not signed: nothing to export\n";
    return;
  }
  security::Envelope e = rebuild_envelope(m, verifier, n);
  security::Bytes tbs = security::to_be_signed(e);
  std::filesystem::path out = dir / std::to_string(n);
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) {
    throw Failure("export message " + std::to_string(n),
                  "cannot create " + out.string() + ": " + ec.message(),
                  MQ_ERROR_INVALID_PARAMETER);
  }
  write_file(out / "tbs.bin", tbs);
  write_file(out / "signature.bin", m.signature);
  if (e.batch.present()) {
    // The signature is over the statement; the proof leads from tbs.bin's leaf to its root
    // (docs/signature-format.md, section 10.9: openssl and scripts/verify-batch-proof.py).
    const security::Bytes statement = security::batch_statement(e.batch);
    const security::Bytes proof = security::encode_batch_proof(e.batch);
    write_file(out / "statement.bin", statement);
    write_file(out / "proof.bin", std::span(proof).subspan(statement.size()));
  }
  write_file(out / "sender.der", m.cert);
  std::string h = hash_name(m.hash_alg) + "\n";
  write_file(out / "hash", std::span(reinterpret_cast<const uint8_t*>(h.data()), h.size()));
}

// The names of the MQSEC_TRUST_* bits that are set (PROPID_M_MQSEC_TRUST).
std::vector<std::string> trust_names(uint32_t t) {
  static const std::pair<uint32_t, const char*> bits[] = {
      {MQSEC_TRUST_SIGNATURE, "signature"},
      {MQSEC_TRUST_CHAIN, "chain"},
      {MQSEC_TRUST_REVOCATION_CHECKED, "revocation-checked"},
      {MQSEC_TRUST_SID_FROM_CERTIFICATE, "sid-from-certificate"},
      {MQSEC_TRUST_SYSTEM_REGISTRY, "system-registry"},
      {MQSEC_TRUST_USER_REGISTRY, "user-registry"},
      {MQSEC_TRUST_SIGNER_AUTHORIZED, "signer-authorized"}};
  std::vector<std::string> out;
  for (const auto& [bit, name] : bits) {
    if (t & bit) out.push_back(name);
  }
  return out;
}

// Where a confirmed SENDERID's confirmation came from, for people.
std::string confirmed_by(uint32_t t) {
  if (t & MQSEC_TRUST_SID_FROM_CERTIFICATE) return "the SID is in the CA-issued certificate";
  if (t & MQSEC_TRUST_SYSTEM_REGISTRY) return "the system registry binds the certificate to it";
  return "the certificate is registered to this SID";
}

void print_message(const Received& m, unsigned n, bool json, const std::string& exported) {
  std::string label = core::utf16_to_utf8(m.label);
  bool text = printable_utf8(m.body);
  std::string body(m.body.begin(), m.body.end());
  std::string sid = m.sender_id_type == MQMSG_SENDERID_TYPE_SID && !m.sender_id.empty()
                        ? sid_string(m.sender_id)
                        : std::string();
  std::string subject = m.cert.empty() ? std::string() : subject_of(m.cert);
  char cls[8];
  std::snprintf(cls, sizeof cls, "0x%04X", m.msg_class);

  if (json) {
    std::ostringstream o;
    o << "{\"n\":" << n << ",\"label\":" << json_string(label) << ",\"class\":\"" << cls
      << "\",\"class_name\":" << json_string(class_name(m.msg_class))
      << ",\"body_size\":" << m.body.size();
    if (text) o << ",\"body\":" << json_string(body);
    o << ",\"priority\":" << static_cast<int>(m.priority)
      << ",\"msg_id\":" << json_string(hex(m.msg_id))
      << ",\"correlation_id\":" << json_string(hex(m.correlation_id))
      << ",\"sent\":" << json_string(iso_time(m.sent))
      << ",\"arrived\":" << json_string(iso_time(m.arrived))
      << ",\"authenticated\":" << static_cast<int>(m.authenticated)
      << ",\"authenticated_name\":" << json_string(authenticated_name(m.authenticated))
      << ",\"hash\":" << json_string(hash_name(m.hash_alg))
      << ",\"sender_sid\":" << (sid.empty() ? "null" : json_string(sid))
      << ",\"certificate_subject\":" << (subject.empty() ? "null" : json_string(subject))
      << ",\"sender_confirmed\":" << (m.confirmed ? "true" : "false") << ",\"trust\":[";
    std::vector<std::string> names = trust_names(m.trust);
    for (size_t i = 0; i < names.size(); ++i) o << (i ? "," : "") << json_string(names[i]);
    o << "]";
    if (!exported.empty()) o << ",\"export\":" << json_string(exported);
    o << "}";
    std::cout << o.str() << '\n';
    return;
  }
  std::cout << "message " << n << '\n'
            << "  label:         " << one_line(label) << '\n'
            << "  body:          "
            << (text ? one_line(body) : "(" + std::to_string(m.body.size()) + " bytes, binary)")
            << '\n'
            << "  class:         " << cls << " (" << class_name(m.msg_class) << ")\n"
            << "  authenticated: " << static_cast<int>(m.authenticated) << " ("
            << authenticated_name(m.authenticated) << ")";
  if (m.authenticated != 0 && !hash_name(m.hash_alg).empty())
    std::cout << ", " << hash_name(m.hash_alg);
  std::cout << '\n'
            << "  sender SID:    " << (sid.empty() ? "(none)" : sid) << '\n'
            << "  certificate:   " << (subject.empty() ? "(none)" : subject) << '\n'
            << "  confirmed:     "
            << (m.confirmed ? "yes (" + confirmed_by(m.trust) + ")"
                : m.cert.empty()
                    ? std::string("no (no certificate)")
                    : std::string("no (the certificate is not registered to this SID)"))
            << '\n';
  if (m.trust != 0) {
    std::string names;
    for (const std::string& t : trust_names(m.trust)) names += (names.empty() ? "" : ", ") + t;
    std::cout << "  trust:         " << names << '\n';
  }
  std::cout << "  sent:          " << iso_time(m.sent) << '\n';
  if (!exported.empty()) std::cout << "  exported to:   " << exported << '\n';
}

DWORD parse_timeout(const std::string& s) {
  if (s == "infinite") return INFINITE;
  return static_cast<DWORD>(std::stoul(s));  // validated by CLI11
}

int run_receive(const ReceiveArgs& a) {
  load_config_or_fail();
  // A local queue's bare name, or a path or format name (a queue of another machine is read
  // remotely through that machine's agent, as MQOpenQueue does).
  if (!is_queue_path(a.queue)) store_queue_name(a.queue);
  const std::string what = "receive from queue '" + a.queue + "'";
  const DWORD timeout = parse_timeout(a.timeout);
  core::Access access;
  access.receive = true;
  const core::Destination d = resolve_destination(a.queue, what, true, "MQOpenQueue");
  std::unique_ptr<OpenQueue> q = open_queue(d, access, what);
  const std::string rejected =
      d.remote() ? "on machine '" + d.machine + "', `mqsec rejected " + d.queue + "`"
                 : "`mqsec rejected " + d.queue + "`";
  security::Verifier verifier;
  for (unsigned n = 1; n <= a.count; ++n) {
    Received m;
    ReasonProbe probe;
    HRESULT hr = receive_one(**q, timeout, m);
    if (hr == MQ_ERROR_IO_TIMEOUT) {
      std::string reason = "no message arrived within " +
                           (timeout == INFINITE ? std::string("ever") : a.timeout + " ms");
      if (a.count > 1) {
        reason += " (received " + std::to_string(n - 1) + " of " + std::to_string(a.count) + ")";
      }
      // Messages that fail verification are taken out of the queue and logged; say so.
      std::string logged = probe.reason(hr);
      std::string hint = logged != hresult_text(hr) ? "the runtime reported: " + logged + "; " +
                                                          rejected + " lists rejected messages"
                                                    : default_hint(hr);
      throw Failure(what, reason, hr, hint);
    }
    check_hr(hr, what, probe);
    std::string exported;
    if (!a.export_dir.empty() && !m.signature.empty()) {
      exported = (std::filesystem::path(a.export_dir) / std::to_string(n)).string();
    }
    print_message(m, n, a.json, exported);
    if (!a.export_dir.empty()) export_message(m, a.export_dir, n, verifier);
  }
  return kExitOk;
}

// ---- rejected --------------------------------------------------------------------------------

struct RejectedArgs {
  std::string queue;  // empty: every queue
  bool json = false;
};

// What the kept (possibly truncated) envelope still tells.
struct RejectedDetail {
  bool decoded = false;
  std::string label, subject, sid;
};

RejectedDetail detail_of(const transport::Rejection& r) {
  RejectedDetail d;
  try {
    security::Envelope e = security::decode(r.envelope);
    d.decoded = true;
    d.label = core::utf16_to_utf8(e.label);
    if (!e.sender_cert.empty()) d.subject = subject_of(e.sender_cert);
    if (e.sender_id_type == MQMSG_SENDERID_TYPE_SID && !e.sender_id.empty()) {
      d.sid = sid_string(e.sender_id);
    }
  } catch (const security::EnvelopeError&) {
  } catch (const Error&) {
  }
  return d;
}

int run_rejected(const RejectedArgs& a) {
  security::SystemConfig cfg = load_config_or_fail();
  const std::string queue = a.queue.empty() ? std::string() : store_queue_name(a.queue);
  const std::string scope = queue.empty() ? "any queue" : "queue '" + queue + "'";
  std::error_code ec;
  std::vector<transport::Rejection> records;
  if (std::filesystem::exists(cfg.store_path / "mqsec.db", ec)) {
    try {
      records = core::rejections(cfg.store_path, queue);
    } catch (const Error& e) {
      throw Failure("read the rejected-messages record", e.what(), e.code(),
                    default_hint(e.code()));
    }
  } else if (!a.json) {
    std::cout << "no rejected messages (no store at " << cfg.store_path.string() << " yet)\n";
    return kExitOk;
  }
  if (a.json) {
    // One JSON document (an array, oldest first), for jq or python3 -m json.tool.
    std::ostringstream o;
    o << "[";
    for (size_t i = 0; i < records.size(); ++i) {
      const transport::Rejection& r = records[i];
      RejectedDetail d = detail_of(r);
      auto opt = [](const std::string& s) { return s.empty() ? "null" : json_string(s); };
      o << (i ? ",\n " : "") << "{\"queue\":" << json_string(r.queue)
        << ",\"time\":" << json_string(iso_time(static_cast<std::time_t>(r.time)))
        << ",\"kind\":" << opt(r.kind) << ",\"reason\":" << json_string(r.reason)
        << ",\"size\":" << r.original_size << ",\"kept\":" << r.envelope.size()
        << ",\"truncated\":" << (r.truncated() ? "true" : "false")
        << ",\"label\":" << (d.decoded ? json_string(d.label) : "null")
        << ",\"certificate_subject\":" << opt(d.subject) << ",\"sender_sid\":" << opt(d.sid) << "}";
    }
    o << "]";
    std::cout << o.str() << '\n';
    return kExitOk;
  }
  if (records.empty()) {
    std::cout << "no rejected messages for " << scope << '\n';
    return kExitOk;
  }
  std::cout << records.size() << " rejected message" << (records.size() == 1 ? "" : "s") << " for "
            << scope << ":\n";
  for (const transport::Rejection& r : records) {
    RejectedDetail d = detail_of(r);
    std::string about;
    if (d.decoded) {
      about = "label '" + one_line(d.label) + "'";
      if (!d.subject.empty()) about += ", from " + d.subject;
    } else if (r.truncated()) {
      about = "(only the first " + std::to_string(r.envelope.size()) + " bytes were kept)";
    } else {
      about = "(envelope does not decode)";
    }
    about += ", " + std::to_string(r.original_size) + " bytes";
    std::cout << "  " << iso_time(static_cast<std::time_t>(r.time)) << "  "
              << (queue.empty() ? "'" + r.queue + "'  " : std::string())
              << (r.kind.empty() ? std::string() : "[" + r.kind + "] ") << r.reason << "\n      "
              << about << '\n';
  }
  return kExitOk;
}

}  // namespace

void add_queue_commands(CLI::App& app, Action& action) {
  CLI::App* queue = app.add_subcommand("queue", "Create, delete and list private queues");
  queue->require_subcommand(1);
  {
    auto a = std::make_shared<QueueCreateArgs>();
    CLI::App* sub = queue->add_subcommand("create", "Create the private queue .\\private$\\NAME");
    sub->add_option("NAME", a->name, "Queue name (without .\\private$\\)")->required();
    sub->add_flag("--authenticate", a->authenticate,
                  "Accept only signed messages (PROPID_Q_AUTHENTICATE)");
    sub->add_option("--label", a->label, "Queue label (up to 124 characters)");
    sub->add_option("--trust", a->trust,
                    "What a signed message's certificate must satisfy on this queue, beyond the "
                    "system's [trust] require (implies --authenticate)")
        ->check(CLI::IsMember({"signature", "chain", "chain+revocation"}));
    sub->add_option("--signer", a->signers,
                    "Authorized signer: a certificate subject as mqsec prints it, e.g. "
                    "\"CN=alice,O=Payroll\" (repeatable; implies --authenticate)")
        ->type_name("SUBJECT")
        ->check(
            [](const std::string& s) -> std::string {
              if (s.find('=') == std::string::npos)
                return "a subject such as \"CN=alice,O=Payroll\"";
              return {};
            },
            "SUBJECT");
    sub->add_option("--signer-sid", a->signer_sids,
                    "Authorized signer by SID, confirmed by a certificate SID or a registry "
                    "(repeatable; implies --authenticate)")
        ->type_name("S-1-...")
        ->check(validate_sid, "SID");
    sub->callback([a, &action] { action = [a] { return run_queue_create(*a); }; });
  }
  {
    auto name = std::make_shared<std::string>();
    CLI::App* sub = queue->add_subcommand("delete", "Delete a queue and its messages");
    sub->add_option("NAME", *name, "Queue name")->required();
    sub->callback([name, &action] { action = [name] { return run_queue_delete(*name); }; });
  }
  {
    CLI::App* sub = queue->add_subcommand(
        "expire",
        "Take out every message whose time to be received (PROPID_M_TIME_TO_BE_RECEIVED) has "
        "passed: into the dead-letter queue when it asks for it, NACKed when it asks for it "
        "(what the agent does every [agent] expiry-sweep-seconds)");
    sub->callback([&action] { action = [] { return run_queue_expire(); }; });
  }
  {
    auto json = std::make_shared<bool>(false);
    CLI::App* sub = queue->add_subcommand(
        "list",
        "List the queues: name, authenticate flag, trust, authorized signers, messages, label");
    sub->add_flag("--json", *json, "One JSON array");
    sub->callback([json, &action] { action = [json] { return run_queue_list(*json); }; });
  }
  {
    auto a = std::make_shared<SendArgs>();
    CLI::App* sub = app.add_subcommand(
        "send", "Send messages with MQSendMessage; --auth signs them on the token");
    sub->add_option("QUEUE", a->queue,
                    "Destination: a local queue's name, or a path or format name "
                    "(hostb\\private$\\q, DIRECT=OS:hostb\\private$\\q) of a queue on "
                    "another machine (through the broker)")
        ->required();
    CLI::Option_group* body = sub->add_option_group("body", "The message body (one of)");
    body->add_option("--body", a->body, "Body text (sent as UTF-8 bytes)");
    body->add_option("--file", a->file, "Body from a file (any bytes)")->type_name("FILE");
    body->require_option(1);
    sub->add_option("--label", a->label, "Message label (up to 250 characters)");
    CLI::Option* auth =
        sub->add_flag("--auth", a->auth,
                      "Sign: one security context (MQGetSecurityContextEx) for all messages, "
                      "PROPID_M_AUTH_LEVEL = MQMSG_AUTH_LEVEL_ALWAYS");
    sub->add_option("--cert", a->cert,
                    "With --auth: sign with this certificate (DER or PEM) instead of your "
                    "internal certificate; its key must be on your token")
        ->type_name("FILE")
        ->needs(auth);
    sub->add_option("--count", a->count, "How many copies to send")
        ->type_name("N")
        ->check(CLI::Range(1u, 1000000u))
        ->capture_default_str();
    sub->add_flag("--batch", a->batch,
                  "With --auth: batch signing (one signature on the token for many messages; "
                  "[signing] batch-max-messages and batch-max-delay-ms, else 1000 and 10 ms)")
        ->needs(auth);
    sub->add_flag("--recoverable", a->recoverable,
                  "MQMSG_DELIVERY_RECOVERABLE: durable when the send returns");
    sub->add_option("--hash", a->hash, "Hash algorithm of the signature (PROPID_M_HASH_ALG)")
        ->check(CLI::IsMember({"sha256", "sha384", "sha512"}))
        ->capture_default_str();
    CLI::Option* admin =
        sub->add_option("--admin-queue", a->admin_queue,
                        "Admin queue for acknowledgments: a local name, or a path or format "
                        "name (may be on another machine)");
    sub->add_flag("--nack", a->nack,
                  "Ask for a NACK on the admin queue when the message is rejected "
                  "(MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL)")
        ->needs(admin);
    sub->callback([a, &action] { action = [a] { return run_send(*a); }; });
  }
  {
    auto a = std::make_shared<ReceiveArgs>();
    CLI::App* sub = app.add_subcommand(
        "receive",
        "Receive messages (MQReceiveMessage): body, label, class, authentication level, "
        "sender SID and certificate, registry confirmation");
    sub->add_option("QUEUE", a->queue,
                    "Queue name, or a path or format name (may be on another machine: a remote "
                    "read through that machine's agent)")
        ->required();
    sub->add_option("--timeout", a->timeout,
                    "Milliseconds to wait for each message, or \"infinite\"")
        ->type_name("MS")
        ->check([](const std::string& s) -> std::string {
          if (s == "infinite") return {};
          if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != s.npos ||
              std::stoull(s) >= INFINITE) {
            return "a number of milliseconds below 4294967295, or \"infinite\"";
          }
          return {};
        })
        ->capture_default_str();
    sub->add_option("--count", a->count, "How many messages to receive")
        ->type_name("N")
        ->check(CLI::Range(1u, 1000000u))
        ->capture_default_str();
    sub->add_flag("--json", a->json, "One JSON object per message, one per line");
    sub->add_option("--export", a->export_dir,
                    "Write DIR/<n>/tbs.bin (the signed bytes), signature.bin, sender.der and "
                    "hash for each signed message")
        ->type_name("DIR");
    sub->callback([a, &action] { action = [a] { return run_receive(*a); }; });
  }
  {
    auto a = std::make_shared<RejectedArgs>();
    CLI::App* sub = app.add_subcommand(
        "rejected",
        "List the messages queues rejected: time, kind, reason, size (bad or missing "
        "signatures, untrusted certificates, unauthorized signers, replays, ...)");
    sub->add_option("QUEUE", a->queue, "Queue name (default: every queue)");
    sub->add_flag("--json", a->json, "One JSON array, oldest first");
    sub->callback([a, &action] { action = [a] { return run_rejected(*a); }; });
  }
}

}  // namespace mqsec::cli
