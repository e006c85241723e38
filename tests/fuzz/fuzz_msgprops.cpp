// libFuzzer target for MSMQ property arrays (MQMSGPROPS) as an application hands them to
// MQSendMessage and MQReceiveMessage: the input bytes are decoded into cProp, property ids,
// VARTYPEs, values and buffers, and go through abi::parse_send, or abi::check_receive and
// abi::fill_receive against a fixed received message. Bad arrays may only be refused with
// mqsec::Error carrying a documented code; nothing may crash or touch memory outside the
// buffers. The decoded array is always honest: every buffer is as large as its size field (and
// a *_LEN property) says, since a caller that lies about its own buffers is undefined
// behaviour in MSMQ too. NULL pointers with a size, zero sizes, wrong VTs, unknown and
// duplicate ids are all fair game.
//
// Input layout (a missing byte reads as 0): [mode][flags][cProp], then per property
// [id selector][vt selector][8 value bytes], and for buffers [buffer flags][len lo][len hi]
// followed by the content (send) or nothing (receive buffers start filled with 0xCC).
#include <mq.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "mqsec/error.hpp"
#include "src/abi/message_props.hpp"
#include "src/security/envelope.hpp"

namespace {

using namespace mqsec;

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(byte() | byte() << 8); }
  uint32_t u32() { return static_cast<uint32_t>(u16() | static_cast<uint32_t>(u16()) << 16); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

constexpr size_t kMaxBuffer = 1024;  // per buffer (bytes, or WCHARs for strings)
// Guard WCHARs after each receive string buffer: ASan does not intercept wmemcpy, so a write
// past the stated capacity is caught by checking the guard instead.
constexpr size_t kGuard = 64;
constexpr wchar_t kGuardValue = static_cast<wchar_t>(0x2603);

constexpr VARTYPE kVts[] = {VT_NULL,  VT_UI1, VT_UI2, VT_UI4,  VT_LPWSTR, VT_UI1 | VT_VECTOR,
                            VT_EMPTY, VT_I4,  VT_UI8, VT_BOOL, VT_LPSTR,  VT_UI4 | VT_VECTOR,
                            VT_CLSID};

// Everything a decoded array owns; the MQMSGPROPS points into it.
struct Array {
  std::vector<MSGPROPID> ids;
  std::vector<MQPROPVARIANT> vars;
  std::vector<HRESULT> status;
  std::vector<std::unique_ptr<uint8_t[]>> bytes;
  std::vector<std::unique_ptr<wchar_t[]>> strings;
  std::vector<std::unique_ptr<GUID>> guids;
  // Receive string buffers: property index, capacity and the buffer (which has kGuard more
  // WCHARs than the capacity the caller states).
  struct Guarded {
    DWORD index;
    size_t capacity;
    const wchar_t* buf;
  };
  std::vector<Guarded> guarded;
  MQMSGPROPS props{};
};

PROPID decode_id(Reader& in) {
  uint8_t s = in.byte();
  if (s <= PROPID_M_LAST_MOVE_TIME) return s;
  if (s == 0xFE) return PROPID_M_MQSEC_SENDER_CONFIRMED;
  if (s == 0xFF) return in.u32();  // anything at all
  return s % (PROPID_M_LAST_MOVE_TIME + 1);
}

VARTYPE decode_vt(Reader& in) {
  uint8_t s = in.byte();
  if (s == 0xFF) return in.u16();
  return kVts[s % (sizeof kVts / sizeof kVts[0])];
}

bool is_len_of_string(PROPID id) {
  return id == PROPID_M_LABEL_LEN || id == PROPID_M_RESP_QUEUE_LEN ||
         id == PROPID_M_ADMIN_QUEUE_LEN || id == PROPID_M_DEST_QUEUE_LEN ||
         id == PROPID_M_RESP_FORMAT_NAME_LEN || id == PROPID_M_DEST_FORMAT_NAME_LEN;
}

void decode(Reader& in, Array& a, bool receive) {
  uint8_t flags = in.byte();
  DWORD count = in.byte();
  if (flags & 32) count += 44;  // up to 299: over 256 (refused) now and then, but bounded
  a.ids.resize(count);
  a.vars.resize(count);
  a.status.assign(count, static_cast<HRESULT>(0x12345678));
  std::vector<size_t> string_sizes(count, 0);
  for (DWORD i = 0; i < count; ++i) {
    MQPROPVARIANT& v = a.vars[i];
    std::memset(&v, 0, sizeof v);
    a.ids[i] = decode_id(in);
    v.vt = decode_vt(in);
    uint64_t raw = static_cast<uint64_t>(in.u32()) | static_cast<uint64_t>(in.u32()) << 32;
    std::memcpy(&v.uhVal, &raw, sizeof raw);
    // A receiver states string buffer sizes in *_LEN; keep them to buffers we really allocate.
    if (receive && is_len_of_string(a.ids[i])) v.ulVal %= kMaxBuffer + 1;
    if (v.vt == (VT_UI1 | VT_VECTOR)) {
      uint8_t bflags = in.byte();
      size_t len = in.u16() % (kMaxBuffer + 1);
      v.caub.cElems = static_cast<ULONG>(len);
      if (bflags & 1) {
        v.caub.pElems = nullptr;  // NULL buffer, with or without a size
        if (bflags & 2) v.caub.cElems = 0;
        continue;
      }
      auto buf = std::make_unique<uint8_t[]>(len + 1);  // +1: never a NULL for len 0
      if (receive) {
        std::memset(buf.get(), 0xCC, len);
      } else {
        for (size_t k = 0; k < len; ++k) buf[k] = in.byte();
      }
      v.caub.pElems = buf.get();
      a.bytes.push_back(std::move(buf));
    } else if (v.vt == VT_CLSID) {
      // A GUID buffer, or NULL (refused when the property is one the runtime fills).
      if (in.byte() & 1) {
        v.puuid = nullptr;
        continue;
      }
      auto g = std::make_unique<GUID>();
      std::memset(g.get(), 0xCC, sizeof(GUID));
      v.puuid = g.get();
      a.guids.push_back(std::move(g));
    } else if (v.vt == VT_LPWSTR) {
      uint8_t bflags = in.byte();
      size_t len = in.u16() % (kMaxBuffer + 1);
      if (bflags & 1) {
        v.pwszVal = nullptr;
        continue;
      }
      string_sizes[i] = len + 1;
      if (!receive) {
        auto buf = std::make_unique<wchar_t[]>(len + 1);
        for (size_t k = 0; k < len; ++k) {
          // Mostly ASCII (so format names can be found), sometimes any 32-bit value.
          uint8_t c = in.byte();
          buf[k] = c == 0xFF ? static_cast<wchar_t>(in.u32()) : static_cast<wchar_t>(c);
        }
        buf[len] = L'\0';
        v.pwszVal = buf.get();
        a.strings.push_back(std::move(buf));
      }
    }
  }
  if (receive) {
    // A receive string buffer holds as many WCHARs as the (last) matching *_LEN says (none
    // without one); filled with junk, as an application's buffer may be.
    for (DWORD i = 0; i < count; ++i) {
      if (string_sizes[i] == 0) continue;
      size_t capacity = 0;
      for (DWORD k = 0; k < count; ++k) {
        if (is_len_of_string(a.ids[k]) && a.ids[k] == a.ids[i] + 1) capacity = a.vars[k].ulVal;
      }
      auto buf = std::make_unique<wchar_t[]>(capacity + kGuard);
      std::fill(buf.get(), buf.get() + capacity + kGuard, kGuardValue);
      a.vars[i].pwszVal = buf.get();
      a.guarded.push_back({i, capacity, buf.get()});
      a.strings.push_back(std::move(buf));
    }
  }
  a.props.cProp = count;
  a.props.aPropID = (flags & 2) ? nullptr : a.ids.data();
  a.props.aPropVar = (flags & 4) ? nullptr : a.vars.data();
  a.props.aStatus = (flags & 8) ? nullptr : a.status.data();
  if (count == 0 && (flags & 16)) {
    a.props.aPropID = nullptr;
    a.props.aPropVar = nullptr;
  }
}

bool documented_send_error(HRESULT hr) {
  return hr == MQ_ERROR_ILLEGAL_PROPID || hr == MQ_ERROR_ILLEGAL_PROPERTY_VT ||
         hr == MQ_ERROR_ILLEGAL_PROPERTY_VALUE || hr == MQ_ERROR_ILLEGAL_PROPERTY_SIZE ||
         hr == MQ_ERROR_LABEL_TOO_LONG || hr == MQ_ERROR_ILLEGAL_FORMATNAME ||
         hr == MQ_ERROR_INVALID_PARAMETER ||
         // queue_from_format's code for a queue on another machine (DIRECT=OS:otherhost\...)
         hr == MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION;
}

bool documented_receive_result(HRESULT hr) {
  return hr == MQ_OK || hr == MQ_INFORMATION_PROPERTY || hr == MQ_ERROR_BUFFER_OVERFLOW ||
         hr == MQ_ERROR_LABEL_BUFFER_TOO_SMALL || hr == MQ_ERROR_SENDERID_BUFFER_TOO_SMALL ||
         hr == MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL || hr == MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL ||
         hr == MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL;
}

void send(Array& a) {
  abi::SendRequest r;
  try {
    r = abi::parse_send(&a.props);
  } catch (const Error& e) {
    if (!documented_send_error(e.code())) abort();
    return;
  }
  if (r.overall != MQ_OK && r.overall != MQ_INFORMATION_PROPERTY) abort();
  // Accepted properties always make an envelope the codec can carry.
  try {
    if (security::decode(security::encode(r.envelope)) != r.envelope) abort();
  } catch (const security::EnvelopeError&) {
    abort();
  }
}

const security::Envelope& fixed_envelope(bool signed_message) {
  static const security::Envelope plain = [] {
    security::Envelope e;
    e.msg_class = MQMSG_CLASS_NORMAL;
    e.body = security::Bytes(100, 0x42);
    return e;
  }();
  static const security::Envelope full = [] {
    security::Envelope e;
    e.msg_class = MQMSG_CLASS_NACK_BAD_SIGNATURE;
    for (size_t i = 0; i < 20; ++i) e.msg_id[i] = static_cast<uint8_t>(i);
    e.priority = 7;
    e.delivery = MQMSG_DELIVERY_RECOVERABLE;
    e.body = security::Bytes(300, 0x42);
    e.label = u"fuzz label \u00e9\U0001F600";
    e.response_queue = u"DIRECT=OS:.\\private$\\replies";
    e.admin_queue = u"DIRECT=OS:.\\private$\\admin";
    e.dest_queue = u"DIRECT=OS:.\\private$\\orders";
    e.sent_time = 1700000000;
    e.auth_level = MQMSG_AUTH_LEVEL_SIG30;
    e.hash_alg = CALG_SHA_256;
    e.sig_scheme = security::SigScheme::RsaPss;
    e.sender_id_type = MQMSG_SENDERID_TYPE_SID;
    e.sender_id = security::Bytes(28, 0x01);
    e.sender_cert = security::Bytes(700, 0x30);
    e.signature = security::Bytes(256, 0x99);
    return e;
  }();
  return signed_message ? full : plain;
}

void receive(Array& a, bool signed_message) {
  try {
    abi::check_receive(&a.props);
  } catch (const Error& e) {
    if (e.code() != MQ_ERROR_ILLEGAL_PROPID && e.code() != MQ_ERROR_ILLEGAL_PROPERTY_VT &&
        e.code() != MQ_ERROR_ILLEGAL_PROPERTY_SIZE && e.code() != MQ_ERROR_INVALID_PARAMETER)
      abort();
    return;
  }
  security::Verdict verdict;
  verdict.signed_message = signed_message;
  verdict.ok = true;
  verdict.authenticated_ex = signed_message ? MQMSG_AUTHENTICATED_SIG30 : 0;
  abi::Received msg;
  msg.envelope = &fixed_envelope(signed_message);
  msg.verdict = &verdict;
  msg.arrived = 1700000001;
  msg.lookup_id = 42;
  // GUIDs asked for as VT_NULL come back allocated: freed below, as an application frees them
  // with MQFreeMemory.
  std::vector<bool> was_null(a.vars.size());
  for (size_t i = 0; i < a.vars.size(); ++i) was_null[i] = a.vars[i].vt == VT_NULL;
  const HRESULT filled = abi::fill_receive(&a.props, msg);
  for (size_t i = 0; i < a.vars.size(); ++i) {
    if (was_null[i] && a.vars[i].vt == VT_CLSID) std::free(a.vars[i].puuid);
  }
  if (!documented_receive_result(filled)) abort();
  for (const Array::Guarded& g : a.guarded) {
    for (size_t k = g.capacity; k < g.capacity + kGuard; ++k) {
      if (g.buf[k] != kGuardValue) {
        std::fprintf(stderr, "fill_receive wrote past the %zu WCHARs of property %u (id %u)\n",
                     g.capacity, static_cast<unsigned>(g.index),
                     static_cast<unsigned>(a.ids[g.index]));
        abort();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 300 properties with 4 KiB buffers are far more than the checks need; the cap keeps runs fast.
  constexpr size_t kMaxInput = 1 << 16;
  if (size == 0 || size > kMaxInput) return 0;
  const uint8_t mode = data[0];
  Reader in(data + 1, size - 1);
  Array a;
  const bool is_receive = mode & 1;
  decode(in, a, is_receive);
  if (is_receive) {
    receive(a, mode & 2);
  } else {
    send(a);
  }
  return 0;
}
