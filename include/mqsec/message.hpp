// mqsec::Message (what a sender fills in) and mqsec::ReceivedMessage (what a receiver gets,
// including who signed it), plus their marshalling to and from mq.h's MQMSGPROPS.
//
// Wraps the PROPID_M_* message properties of mq.h. Message only records what the caller set;
// properties left unset are not sent, so MSMQ's defaults apply (priority 3, express delivery,
// no authentication, SHA-256, the sender's SID attached when signing). Values are checked by
// MQSendMessage, not here: an out-of-range priority or a label over 250 characters makes
// Queue::send throw mqsec::Error with MQ_ERROR_ILLEGAL_PROPERTY_VALUE / MQ_ERROR_LABEL_TOO_LONG.
//
// Authentication: set_auth_level(MQMSG_AUTH_LEVEL_ALWAYS) (or SIG10/SIG20/SIG30) asks for a
// signature. The message is signed with the attached security context; without one, the runtime
// makes a transient context for every send (slower: it opens the token each time). To sign many
// messages cheaply, attach a context: attach(const SecurityContext&) borrows one the caller keeps
// alive, attach(std::shared_ptr<const SecurityContext>) shares ownership, and
// attach_current_security_context() (COM's AttachCurrentSecurityContext2) acquires one for the
// message's sender certificate, or the internal certificate, and keeps it alive in the message
// and its copies. As in MSMQ, attaching does not by itself request authentication, and a sender
// certificate that differs from the context's certificate makes the runtime ignore the context.
//
// Errors (all mqsec::Error with the HRESULT):
// - set_label / set_response_queue / set_admin_queue: MQ_ERROR_ILLEGAL_PROPERTY_VALUE or
//   MQ_ERROR_ILLEGAL_FORMATNAME for text that is not valid UTF-8 (or contains NUL).
// - set_body, set_sender_certificate: MQ_ERROR_ILLEGAL_PROPERTY_SIZE over 4 GiB.
// - attach_current_security_context: whatever MQGetSecurityContextEx fails with.
// Getters and ReceivedMessage's accessors never throw.
//
// Header-only over the C ABI: link with -lmqrt only.
#pragma once

#include <mq.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqsec/detail/util.hpp"
#include "mqsec/error.hpp"
#include "mqsec/security_context.hpp"

namespace mqsec {

using Bytes = std::vector<uint8_t>;
// PROPID_M_MSGID / PROPID_M_CORRELATIONID: 20 bytes (a GUID and a 32-bit counter).
using MessageId = std::array<uint8_t, PROPID_M_MSGID_SIZE>;

enum class Delivery : uint8_t {
  Express = MQMSG_DELIVERY_EXPRESS,          // may be lost on a crash; faster
  Recoverable = MQMSG_DELIVERY_RECOVERABLE,  // on disk when Queue::send returns
};

// A binary SID (PROPID_M_SENDERID) in its string form, "S-1-22-1-1000"; empty if `sid` is not
// a well-formed SID. Never throws except std::bad_alloc.
inline std::string sid_to_string(std::span<const uint8_t> sid) {
  if (sid.size() < 8) return {};
  const size_t count = sid[1];
  if (count > 15 || sid.size() != 8 + 4 * count) return {};
  uint64_t authority = 0;
  for (size_t i = 2; i < 8; ++i) authority = (authority << 8) | sid[i];
  std::string out = "S-" + std::to_string(sid[0]) + "-";
  if (authority >> 32) {
    // Windows' convention: authorities that do not fit 32 bits are printed in hex.
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%012llX", static_cast<unsigned long long>(authority));
    out += buf;
  } else {
    out += std::to_string(authority);
  }
  for (size_t k = 0; k < count; ++k) {
    const uint8_t* p = sid.data() + 8 + 4 * k;  // sub-authorities are little-endian
    uint32_t v = uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
    out += "-" + std::to_string(v);
  }
  return out;
}

namespace detail {
class SendProperties;
class ReceiveProperties;
}  // namespace detail

class Message {
 public:
  Message() = default;

  // ---- body and plain properties (each setter returns *this for chaining) ----
  Message& set_body(std::span<const uint8_t> bytes) {
    check_size(bytes.size(), "the body");
    body_.assign(bytes.begin(), bytes.end());
    return *this;
  }
  Message& set_body(std::string_view text) {
    check_size(text.size(), "the body");
    body_.assign(text.begin(), text.end());
    return *this;
  }
  // UTF-8; at most 250 characters (MQSendMessage checks).
  Message& set_label(std::string_view utf8) {
    label_ = detail::to_wide(utf8, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "the message label");
    return *this;
  }
  Message& set_priority(uint8_t priority) {  // MQ_MIN_PRIORITY..MQ_MAX_PRIORITY
    priority_ = priority;
    return *this;
  }
  Message& set_delivery(Delivery delivery) {
    delivery_ = delivery;
    return *this;
  }
  Message& set_app_specific(uint32_t value) {
    app_specific_ = value;
    return *this;
  }
  Message& set_correlation_id(const MessageId& id) {
    correlation_id_ = id;
    return *this;
  }
  Message& set_body_type(uint32_t vt) {  // PROPID_M_BODY_TYPE, a VARTYPE by convention
    body_type_ = vt;
    return *this;
  }
  // Format names ("DIRECT=OS:.\private$\replies").
  Message& set_response_queue(std::string_view format_name) {
    response_queue_ =
        detail::to_wide(format_name, MQ_ERROR_ILLEGAL_FORMATNAME, "the response queue");
    return *this;
  }
  Message& set_admin_queue(std::string_view format_name) {
    admin_queue_ = detail::to_wide(format_name, MQ_ERROR_ILLEGAL_FORMATNAME, "the admin queue");
    return *this;
  }
  Message& set_acknowledge(uint8_t flags) {  // MQMSG_ACKNOWLEDGMENT_*
    acknowledge_ = flags;
    return *this;
  }

  // ---- authentication ----
  Message& set_auth_level(uint32_t level) {  // MQMSG_AUTH_LEVEL_*
    auth_level_ = level;
    return *this;
  }
  Message& set_hash_algorithm(uint32_t calg) {  // CALG_SHA_256 (default), _384, _512
    hash_algorithm_ = calg;
    return *this;
  }
  Message& set_sender_id_type(uint32_t type) {  // MQMSG_SENDERID_TYPE_SID (default) or _NONE
    sender_id_type_ = type;
    return *this;
  }
  // PROPID_M_SENDER_CERT: sign with this certificate's key. Also the certificate that
  // attach_current_security_context() acquires a context for.
  Message& set_sender_certificate(std::span<const uint8_t> der) {
    check_size(der.size(), "the sender certificate");
    sender_certificate_ = Bytes(der.begin(), der.end());
    return *this;
  }
  Message& clear_sender_certificate() noexcept {
    sender_certificate_.reset();
    return *this;
  }

  // COM's AttachCurrentSecurityContext2: acquires a context for the sender certificate if one
  // is set, else for the internal certificate, and keeps it in the message (copies share it;
  // the last one frees it). Replaces any attached context. Throws mqsec::Error.
  Message& attach_current_security_context() {
    auto ctx = std::make_shared<const SecurityContext>(
        sender_certificate_ ? SecurityContext::from_certificate(*sender_certificate_)
                            : SecurityContext::internal());
    return attach(std::move(ctx));
  }
  // Borrows `context`: the caller keeps it alive while sending. If it is freed first, send
  // throws MQ_ERROR_BAD_SECURITY_CONTEXT (handles are never reused, so never another context).
  Message& attach(const SecurityContext& context) noexcept {
    owned_context_.reset();
    borrowed_context_ = context.handle();
    return *this;
  }
  // Shares ownership of `context` (null detaches).
  Message& attach(std::shared_ptr<const SecurityContext> context) noexcept {
    owned_context_ = std::move(context);
    borrowed_context_ = 0;
    return *this;
  }
  Message& detach_security_context() noexcept {
    owned_context_.reset();
    borrowed_context_ = 0;
    return *this;
  }
  // The PROPID_M_SECURITY_CONTEXT value sent, 0 if none is attached.
  uint32_t security_context_handle() const noexcept {
    return owned_context_ ? owned_context_->handle() : borrowed_context_;
  }
  // The owned context (attach_current_security_context or the shared_ptr overload), or null.
  const std::shared_ptr<const SecurityContext>& security_context() const noexcept {
    return owned_context_;
  }

  // ---- getters: what was set (std::nullopt: not set, the runtime's default applies) ----
  const Bytes& body() const noexcept { return body_; }
  std::string body_string() const { return std::string(body_.begin(), body_.end()); }
  std::optional<std::string> label() const { return text(label_); }
  std::optional<uint8_t> priority() const noexcept { return priority_; }
  std::optional<Delivery> delivery() const noexcept { return delivery_; }
  std::optional<uint32_t> app_specific() const noexcept { return app_specific_; }
  std::optional<MessageId> correlation_id() const noexcept { return correlation_id_; }
  std::optional<uint32_t> body_type() const noexcept { return body_type_; }
  std::optional<std::string> response_queue() const { return text(response_queue_); }
  std::optional<std::string> admin_queue() const { return text(admin_queue_); }
  std::optional<uint8_t> acknowledge() const noexcept { return acknowledge_; }
  std::optional<uint32_t> auth_level() const noexcept { return auth_level_; }
  std::optional<uint32_t> hash_algorithm() const noexcept { return hash_algorithm_; }
  std::optional<uint32_t> sender_id_type() const noexcept { return sender_id_type_; }
  const std::optional<Bytes>& sender_certificate() const noexcept { return sender_certificate_; }

 private:
  friend class detail::SendProperties;

  static void check_size(size_t n, const char* what) {
    if (n > UINT32_MAX) {
      throw Error(MQ_ERROR_ILLEGAL_PROPERTY_SIZE, std::string(what) + " is larger than 4 GiB");
    }
  }
  static std::optional<std::string> text(const std::optional<std::wstring>& w) {
    if (!w) return std::nullopt;
    return detail::to_utf8(*w);
  }

  Bytes body_;
  std::optional<std::wstring> label_, response_queue_, admin_queue_;
  std::optional<uint8_t> priority_, acknowledge_;
  std::optional<Delivery> delivery_;
  std::optional<uint32_t> app_specific_, body_type_, auth_level_, hash_algorithm_, sender_id_type_;
  std::optional<MessageId> correlation_id_;
  std::optional<Bytes> sender_certificate_;
  std::shared_ptr<const SecurityContext> owned_context_;
  uint32_t borrowed_context_ = 0;
};

// A message as MQReceiveMessage returned it (receive or peek). The runtime has verified it:
// a message whose signature failed never gets here. Accessors never throw.
class ReceivedMessage {
 public:
  using TimePoint = std::chrono::system_clock::time_point;

  const Bytes& body() const noexcept { return body_; }
  std::string body_string() const { return std::string(body_.begin(), body_.end()); }
  const std::string& label() const noexcept { return label_; }  // UTF-8
  uint16_t message_class() const noexcept { return class_; }    // MQMSG_CLASS_*
  const MessageId& id() const noexcept { return id_; }
  const MessageId& correlation_id() const noexcept { return correlation_id_; }
  uint8_t priority() const noexcept { return priority_; }
  Delivery delivery() const noexcept { return delivery_; }
  uint8_t acknowledge() const noexcept { return acknowledge_; }
  uint32_t app_specific() const noexcept { return app_specific_; }
  uint32_t body_type() const noexcept { return body_type_; }
  // Format names; empty when the sender set none.
  const std::string& response_queue() const noexcept { return response_queue_; }
  const std::string& admin_queue() const noexcept { return admin_queue_; }
  const std::string& destination_queue() const noexcept { return destination_queue_; }
  // PROPID_M_SENTTIME / PROPID_M_ARRIVEDTIME (one-second resolution, as in MSMQ).
  TimePoint sent_time() const noexcept { return sent_time_; }
  TimePoint arrived_time() const noexcept { return arrived_time_; }

  // ---- sender authentication ----
  // PROPID_M_AUTHENTICATED: the signature was verified (signature, certificate validity and,
  // when the certificate is registered, its SID).
  bool authenticated() const noexcept { return authenticated_ != 0; }
  // PROPID_M_AUTHENTICATED_EX: MQMSG_AUTHENTICATED_SIG10 / SIG20 / SIG30, 0 when not signed.
  uint8_t authenticated_ex() const noexcept { return authenticated_ex_; }
  uint32_t auth_level() const noexcept { return auth_level_; }          // as the sender asked
  uint32_t hash_algorithm() const noexcept { return hash_algorithm_; }  // CALG_*
  // PROPID_M_SENDERID (binary SID; empty when the sender attached none) and its string form.
  const Bytes& sender_id() const noexcept { return sender_id_; }
  uint32_t sender_id_type() const noexcept { return sender_id_type_; }
  std::string sender_sid_string() const { return sid_to_string(sender_id_); }
  // PROPID_M_SENDER_CERT (DER; empty for unsigned messages).
  const Bytes& sender_certificate() const noexcept { return sender_certificate_; }
  // PROPID_M_MQSEC_SENDER_CONFIRMED: the certificate is registered and its registered SID is
  // sender_id(), i.e. the SID is vouched for, not just claimed by the signer.
  bool sender_confirmed() const noexcept { return sender_confirmed_ != 0; }
  const Bytes& signature() const noexcept { return signature_; }  // PROPID_M_SIGNATURE

 private:
  friend class detail::ReceiveProperties;
  ReceivedMessage() = default;

  Bytes body_, sender_id_, sender_certificate_, signature_;
  std::string label_, response_queue_, admin_queue_, destination_queue_;
  MessageId id_{}, correlation_id_{};
  TimePoint sent_time_{}, arrived_time_{};
  uint32_t app_specific_ = 0, body_type_ = 0, auth_level_ = 0, hash_algorithm_ = 0,
           sender_id_type_ = 0;
  uint16_t class_ = 0;
  uint8_t priority_ = 0, acknowledge_ = 0, authenticated_ = 0, authenticated_ex_ = 0,
          sender_confirmed_ = 0;
  Delivery delivery_ = Delivery::Express;
};

namespace detail {

// MQMSGPROPS for MQSendMessage, pointing into a Message (which must outlive this object) and
// returning the new message id through PROPID_M_MSGID.
class SendProperties {
 public:
  explicit SendProperties(const Message& m) {
    ids_.reserve(20);
    vars_.reserve(20);
    if (!m.body_.empty()) bytes(PROPID_M_BODY, m.body_.data(), m.body_.size());
    if (m.label_) text(PROPID_M_LABEL, *m.label_);
    if (m.priority_) ui1(PROPID_M_PRIORITY, *m.priority_);
    if (m.delivery_) ui1(PROPID_M_DELIVERY, static_cast<UCHAR>(*m.delivery_));
    if (m.app_specific_) ui4(PROPID_M_APPSPECIFIC, *m.app_specific_);
    if (m.correlation_id_) {
      bytes(PROPID_M_CORRELATIONID, m.correlation_id_->data(), m.correlation_id_->size());
    }
    if (m.body_type_) ui4(PROPID_M_BODY_TYPE, *m.body_type_);
    if (m.response_queue_) text(PROPID_M_RESP_QUEUE, *m.response_queue_);
    if (m.admin_queue_) text(PROPID_M_ADMIN_QUEUE, *m.admin_queue_);
    if (m.acknowledge_) ui1(PROPID_M_ACKNOWLEDGE, *m.acknowledge_);
    if (m.auth_level_) ui4(PROPID_M_AUTH_LEVEL, *m.auth_level_);
    if (m.hash_algorithm_) ui4(PROPID_M_HASH_ALG, *m.hash_algorithm_);
    if (m.sender_id_type_) ui4(PROPID_M_SENDERID_TYPE, *m.sender_id_type_);
    if (m.sender_certificate_) {
      bytes(PROPID_M_SENDER_CERT, m.sender_certificate_->data(), m.sender_certificate_->size());
    }
    if (uint32_t ctx = m.security_context_handle(); ctx != 0) {
      ui4(PROPID_M_SECURITY_CONTEXT, ctx);
    }
    bytes(PROPID_M_MSGID, msg_id_.data(), msg_id_.size());  // output
    status_.assign(ids_.size(), MQ_OK);
  }
  SendProperties(const SendProperties&) = delete;
  SendProperties& operator=(const SendProperties&) = delete;

  MQMSGPROPS* get() noexcept {
    props_ = MQMSGPROPS{static_cast<DWORD>(ids_.size()), ids_.data(), vars_.data(), status_.data()};
    return &props_;
  }
  const MessageId& message_id() const noexcept { return msg_id_; }

  // The property MQSendMessage rejected ("PROPID_M_LABEL"), for error messages; empty if the
  // failure was not about one property.
  std::string failed_property() const {
    for (size_t i = 0; i < ids_.size(); ++i) {
      if (FAILED(status_[i])) return property_name(ids_[i]);
    }
    return {};
  }

 private:
  static std::string property_name(MSGPROPID id) {
    switch (id) {
      case PROPID_M_BODY:
        return "property PROPID_M_BODY";
      case PROPID_M_LABEL:
        return "property PROPID_M_LABEL";
      case PROPID_M_PRIORITY:
        return "property PROPID_M_PRIORITY";
      case PROPID_M_DELIVERY:
        return "property PROPID_M_DELIVERY";
      case PROPID_M_CORRELATIONID:
        return "property PROPID_M_CORRELATIONID";
      case PROPID_M_RESP_QUEUE:
        return "property PROPID_M_RESP_QUEUE";
      case PROPID_M_ADMIN_QUEUE:
        return "property PROPID_M_ADMIN_QUEUE";
      case PROPID_M_ACKNOWLEDGE:
        return "property PROPID_M_ACKNOWLEDGE";
      case PROPID_M_AUTH_LEVEL:
        return "property PROPID_M_AUTH_LEVEL";
      case PROPID_M_HASH_ALG:
        return "property PROPID_M_HASH_ALG";
      case PROPID_M_SENDERID_TYPE:
        return "property PROPID_M_SENDERID_TYPE";
      case PROPID_M_SENDER_CERT:
        return "property PROPID_M_SENDER_CERT";
      case PROPID_M_SECURITY_CONTEXT:
        return "property PROPID_M_SECURITY_CONTEXT";
      default:
        return "property " + std::to_string(id);
    }
  }
  MQPROPVARIANT& add(MSGPROPID id, VARTYPE vt) {
    ids_.push_back(id);
    MQPROPVARIANT v{};
    v.vt = vt;
    return vars_.emplace_back(v);
  }
  void ui1(MSGPROPID id, UCHAR value) { add(id, VT_UI1).bVal = value; }
  void ui4(MSGPROPID id, ULONG value) { add(id, VT_UI4).ulVal = value; }
  // MQSendMessage only reads the input buffers; mq.h's pointers are non-const as in MSMQ.
  void bytes(MSGPROPID id, const uint8_t* data, size_t n) {
    MQPROPVARIANT& v = add(id, VT_UI1 | VT_VECTOR);
    v.caub.cElems = static_cast<ULONG>(n);
    v.caub.pElems = const_cast<UCHAR*>(data);
  }
  void text(MSGPROPID id, const std::wstring& s) {
    add(id, VT_LPWSTR).pwszVal = const_cast<LPWSTR>(s.c_str());
  }

  std::vector<MSGPROPID> ids_;
  std::vector<MQPROPVARIANT> vars_;
  std::vector<HRESULT> status_;
  MessageId msg_id_{};
  MQMSGPROPS props_{};
};

// MQMSGPROPS for MQReceiveMessage asking for every property ReceivedMessage exposes, with
// buffers sized by the last attempt. The runtime reports a too-small buffer with
// MQ_ERROR_BUFFER_OVERFLOW / *_BUFFER_TOO_SMALL, leaves the message in the queue and fills in
// the sizes it needs (BODY_SIZE, SENDERID_LEN, SENDER_CERT_LEN, SIGNATURE_LEN, *_LEN); grow()
// then resizes and the caller asks again.
class ReceiveProperties {
 public:
  // 64 KiB of body covers most messages in one call; bigger bodies take a second call.
  static constexpr size_t kInitialBody = 64 * 1024;

  ReceiveProperties()
      : body_(kInitialBody),
        sender_id_(68),  // the largest SID: 8 + 15 * 4 bytes
        sender_cert_(4096),
        signature_(1024),
        label_(MQ_MAX_MSG_LABEL_LEN + 1, L'\0'),
        response_queue_(256, L'\0'),
        admin_queue_(256, L'\0'),
        dest_queue_(256, L'\0') {}
  ReceiveProperties(const ReceiveProperties&) = delete;
  ReceiveProperties& operator=(const ReceiveProperties&) = delete;

  // Fresh property array over the current buffers (the runtime rewrites sizes in place).
  MQMSGPROPS* prepare() {
    set_ui(kClass, PROPID_M_CLASS, VT_UI2);
    set_bytes(kMsgId, PROPID_M_MSGID, msg_id_.data(), msg_id_.size());
    set_bytes(kCorrelationId, PROPID_M_CORRELATIONID, correlation_id_.data(),
              correlation_id_.size());
    set_ui(kPriority, PROPID_M_PRIORITY, VT_UI1);
    set_ui(kDelivery, PROPID_M_DELIVERY, VT_UI1);
    set_ui(kAcknowledge, PROPID_M_ACKNOWLEDGE, VT_UI1);
    set_ui(kAppSpecific, PROPID_M_APPSPECIFIC, VT_UI4);
    set_bytes(kBody, PROPID_M_BODY, body_.data(), body_.size());
    set_ui(kBodySize, PROPID_M_BODY_SIZE, VT_UI4);
    set_ui(kBodyType, PROPID_M_BODY_TYPE, VT_UI4);
    set_text(kLabel, PROPID_M_LABEL, label_);
    set_ui(kLabelLen, PROPID_M_LABEL_LEN, VT_UI4, static_cast<ULONG>(label_.size()));
    set_text(kRespQueue, PROPID_M_RESP_QUEUE, response_queue_);
    set_ui(kRespQueueLen, PROPID_M_RESP_QUEUE_LEN, VT_UI4,
           static_cast<ULONG>(response_queue_.size()));
    set_text(kAdminQueue, PROPID_M_ADMIN_QUEUE, admin_queue_);
    set_ui(kAdminQueueLen, PROPID_M_ADMIN_QUEUE_LEN, VT_UI4,
           static_cast<ULONG>(admin_queue_.size()));
    set_text(kDestQueue, PROPID_M_DEST_QUEUE, dest_queue_);
    set_ui(kDestQueueLen, PROPID_M_DEST_QUEUE_LEN, VT_UI4, static_cast<ULONG>(dest_queue_.size()));
    set_ui(kSentTime, PROPID_M_SENTTIME, VT_UI4);
    set_ui(kArrivedTime, PROPID_M_ARRIVEDTIME, VT_UI4);
    set_bytes(kSenderId, PROPID_M_SENDERID, sender_id_.data(), sender_id_.size());
    set_ui(kSenderIdLen, PROPID_M_SENDERID_LEN, VT_UI4);
    set_ui(kSenderIdType, PROPID_M_SENDERID_TYPE, VT_UI4);
    set_ui(kAuthLevel, PROPID_M_AUTH_LEVEL, VT_UI4);
    set_ui(kAuthenticated, PROPID_M_AUTHENTICATED, VT_UI1);
    set_ui(kAuthenticatedEx, PROPID_M_AUTHENTICATED_EX, VT_UI1);
    set_ui(kHashAlg, PROPID_M_HASH_ALG, VT_UI4);
    set_bytes(kSenderCert, PROPID_M_SENDER_CERT, sender_cert_.data(), sender_cert_.size());
    set_ui(kSenderCertLen, PROPID_M_SENDER_CERT_LEN, VT_UI4);
    set_bytes(kSignature, PROPID_M_SIGNATURE, signature_.data(), signature_.size());
    set_ui(kSignatureLen, PROPID_M_SIGNATURE_LEN, VT_UI4);
    set_ui(kConfirmed, PROPID_M_MQSEC_SENDER_CONFIRMED, VT_UI1);
    status_.fill(MQ_OK);
    props_ = MQMSGPROPS{kCount, ids_.data(), vars_.data(), status_.data()};
    return &props_;
  }

  // Whether `hr` says a buffer was too small.
  static bool is_buffer_error(HRESULT hr) noexcept {
    return hr == MQ_ERROR_BUFFER_OVERFLOW || hr == MQ_ERROR_SENDERID_BUFFER_TOO_SMALL ||
           hr == MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL || hr == MQ_ERROR_LABEL_BUFFER_TOO_SMALL ||
           hr == MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL ||
           hr == MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL || hr == MQ_ERROR_USER_BUFFER_TOO_SMALL;
  }

  // After a buffer error: grows every buffer to the size the runtime reported. Returns false
  // if nothing grew (the runtime's report did not explain the failure: retrying is pointless).
  bool grow() {
    bool grew = false;
    grew |= grow_to(body_, vars_[kBodySize].ulVal);
    grew |= grow_to(sender_id_, vars_[kSenderIdLen].ulVal);
    grew |= grow_to(sender_cert_, vars_[kSenderCertLen].ulVal);
    grew |= grow_to(signature_, vars_[kSignatureLen].ulVal);
    grew |= grow_to(label_, vars_[kLabelLen].ulVal);
    grew |= grow_to(response_queue_, vars_[kRespQueueLen].ulVal);
    grew |= grow_to(admin_queue_, vars_[kAdminQueueLen].ulVal);
    grew |= grow_to(dest_queue_, vars_[kDestQueueLen].ulVal);
    return grew;
  }

  // After a successful call: the message (moves the buffers out; call once).
  ReceivedMessage take() {
    ReceivedMessage m;
    m.class_ = vars_[kClass].uiVal;
    m.id_ = msg_id_;
    m.correlation_id_ = correlation_id_;
    m.priority_ = vars_[kPriority].bVal;
    m.delivery_ = vars_[kDelivery].bVal == MQMSG_DELIVERY_RECOVERABLE ? Delivery::Recoverable
                                                                      : Delivery::Express;
    m.acknowledge_ = vars_[kAcknowledge].bVal;
    m.app_specific_ = vars_[kAppSpecific].ulVal;
    m.body_type_ = vars_[kBodyType].ulVal;
    m.body_ = take_bytes(body_, vars_[kBody].caub.cElems);
    m.label_ = take_text(label_, vars_[kLabelLen].ulVal);
    m.response_queue_ = take_text(response_queue_, vars_[kRespQueueLen].ulVal);
    m.admin_queue_ = take_text(admin_queue_, vars_[kAdminQueueLen].ulVal);
    m.destination_queue_ = take_text(dest_queue_, vars_[kDestQueueLen].ulVal);
    m.sent_time_ = time_of(vars_[kSentTime].ulVal);
    m.arrived_time_ = time_of(vars_[kArrivedTime].ulVal);
    m.sender_id_ = take_bytes(sender_id_, vars_[kSenderId].caub.cElems);
    m.sender_id_type_ = vars_[kSenderIdType].ulVal;
    m.auth_level_ = vars_[kAuthLevel].ulVal;
    m.authenticated_ = vars_[kAuthenticated].bVal;
    m.authenticated_ex_ = vars_[kAuthenticatedEx].bVal;
    m.hash_algorithm_ = vars_[kHashAlg].ulVal;
    m.sender_certificate_ = take_bytes(sender_cert_, vars_[kSenderCert].caub.cElems);
    m.signature_ = take_bytes(signature_, vars_[kSignature].caub.cElems);
    m.sender_confirmed_ = vars_[kConfirmed].bVal;
    return m;
  }

 private:
  enum Index : DWORD {
    kClass,
    kMsgId,
    kCorrelationId,
    kPriority,
    kDelivery,
    kAcknowledge,
    kAppSpecific,
    kBody,
    kBodySize,
    kBodyType,
    kLabel,
    kLabelLen,
    kRespQueue,
    kRespQueueLen,
    kAdminQueue,
    kAdminQueueLen,
    kDestQueue,
    kDestQueueLen,
    kSentTime,
    kArrivedTime,
    kSenderId,
    kSenderIdLen,
    kSenderIdType,
    kAuthLevel,
    kAuthenticated,
    kAuthenticatedEx,
    kHashAlg,
    kSenderCert,
    kSenderCertLen,
    kSignature,
    kSignatureLen,
    kConfirmed,
    kCount
  };

  void set_ui(Index i, MSGPROPID id, VARTYPE vt, ULONG value = 0) {
    ids_[i] = id;
    vars_[i] = MQPROPVARIANT{};
    vars_[i].vt = vt;
    vars_[i].ulVal = value;  // for VT_UI1/UI2 the runtime overwrites the union anyway
  }
  void set_bytes(Index i, MSGPROPID id, uint8_t* data, size_t n) {
    ids_[i] = id;
    vars_[i] = MQPROPVARIANT{};
    vars_[i].vt = VT_UI1 | VT_VECTOR;
    vars_[i].caub.cElems = static_cast<ULONG>(n);
    vars_[i].caub.pElems = data;
  }
  void set_text(Index i, MSGPROPID id, std::wstring& buffer) {
    ids_[i] = id;
    vars_[i] = MQPROPVARIANT{};
    vars_[i].vt = VT_LPWSTR;
    vars_[i].pwszVal = buffer.data();
  }
  static bool grow_to(Bytes& b, ULONG needed) {
    if (needed <= b.size()) return false;
    b.resize(needed);
    return true;
  }
  static bool grow_to(std::wstring& s, ULONG needed_with_nul) {
    if (needed_with_nul <= s.size()) return false;
    s.resize(needed_with_nul, L'\0');
    return true;
  }
  static Bytes take_bytes(Bytes& b, ULONG n) {
    b.resize(std::min<size_t>(n, b.size()));
    // Do not hand a 64 KiB allocation to a 10-byte message for its whole lifetime.
    if (b.capacity() > 2 * b.size() + 4096) b.shrink_to_fit();
    return std::move(b);
  }
  static std::string take_text(const std::wstring& s, ULONG len_with_nul) {
    size_t n = len_with_nul == 0 ? 0 : std::min<size_t>(len_with_nul - 1, s.size());
    return to_utf8(std::wstring_view(s.data(), n));
  }
  static ReceivedMessage::TimePoint time_of(ULONG seconds) {
    return ReceivedMessage::TimePoint(std::chrono::seconds(seconds));
  }

  Bytes body_, sender_id_, sender_cert_, signature_;
  std::wstring label_, response_queue_, admin_queue_, dest_queue_;
  MessageId msg_id_{}, correlation_id_{};
  std::array<MSGPROPID, kCount> ids_{};
  std::array<MQPROPVARIANT, kCount> vars_{};
  std::array<HRESULT, kCount> status_{};
  MQMSGPROPS props_{};
};

}  // namespace detail
}  // namespace mqsec
