// mqsec::Queue and mqsec::Cursor: RAII owners of an open queue handle and a cursor, and the
// queue-management calls.
//
// Wraps mq.h's MQCreateQueue, MQDeleteQueue, MQPathNameToFormatName, MQOpenQueue,
// MQCloseQueue (Queue's destructor), MQSendMessage, MQReceiveMessage (synchronous receive and
// peek, with or without a cursor), MQCreateCursor and MQCloseCursor (Cursor's destructor).
// Names are UTF-8: path names ".\private$\orders", format names "DIRECT=OS:.\private$\orders".
//
// Receiving asks for every property ReceivedMessage exposes. Buffers start generous (64 KiB of
// body, 4 KiB of certificate); when the runtime reports that one is too small
// (MQ_ERROR_BUFFER_OVERFLOW, MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL, ...), it leaves the message
// where it was and reports the sizes it needs, and the call is repeated with exact buffers,
// within what is left of the timeout. A timeout is not an error: receive and peek return
// std::nullopt.
//
// Errors: every function except the destructors and accessors throws mqsec::Error carrying the
// HRESULT of the MQ function that failed and a message naming it, e.g.
// "MQOpenQueue failed: MQ_ERROR_QUEUE_NOT_FOUND (0xC00E0003): DIRECT=OS:.\private$\x".
// Typical codes: MQ_ERROR_QUEUE_NOT_FOUND, MQ_ERROR_QUEUE_EXISTS, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME,
// MQ_ERROR_ILLEGAL_FORMATNAME, MQ_ERROR_ACCESS_DENIED (wrong access mode),
// MQ_ERROR_SHARING_VIOLATION (MQ_DENY_RECEIVE_SHARE), MQ_ERROR_BAD_SECURITY_CONTEXT,
// MQ_ERROR_ILLEGAL_PROPERTY_VALUE, MQ_ERROR_LABEL_TOO_LONG, MQ_ERROR_SERVICE_NOT_AVAILABLE
// (configuration), MQ_ERROR_INVALID_PARAMETER (e.g. a negative timeout). std::bad_alloc as usual.
//
// Thread safety: as mq.h's handles: one Queue may be used by several threads at once for
// send and receive; moving or destroying it must not race with its use.
//
// Header-only over the C ABI: link with -lmqrt only.
#pragma once

#include <mq.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "mqsec/detail/util.hpp"
#include "mqsec/error.hpp"
#include "mqsec/message.hpp"

namespace mqsec {

// Whether `name` is a format name (DIRECT=, PRIVATE=, PUBLIC=) rather than a path name.
inline bool is_format_name(std::string_view name) noexcept {
  for (std::string_view prefix : {"DIRECT=", "PRIVATE=", "PUBLIC="}) {
    if (name.size() >= prefix.size() &&
        std::equal(prefix.begin(), prefix.end(), name.begin(), [](char a, char b) {
          return a == std::toupper(static_cast<unsigned char>(b));
        })) {
      return true;
    }
  }
  return false;
}

// MQPathNameToFormatName: the format name of an existing queue. Throws mqsec::Error
// (MQ_ERROR_QUEUE_NOT_FOUND, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, ...).
inline std::string path_to_format_name(std::string_view path) {
  std::wstring wpath = detail::to_wide(path, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, "the path name");
  std::wstring buf(256, L'\0');
  for (int attempt = 0; attempt < 2; ++attempt) {
    DWORD len = static_cast<DWORD>(buf.size());
    HRESULT hr = MQPathNameToFormatName(wpath.c_str(), buf.data(), &len);
    if (hr == MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL && len > buf.size()) {
      buf.assign(len, L'\0');
      continue;
    }
    detail::check(hr, "MQPathNameToFormatName", path);
    return detail::to_utf8(std::wstring_view(buf.c_str()));
  }
  throw Error(
      MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL,
      detail::failure_text("MQPathNameToFormatName", MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL, path));
}

// A cursor over one queue (MQCreateCursor); closed by the destructor (MQCloseCursor).
// Move-only. Create with Queue::create_cursor().
class Cursor {
 public:
  Cursor() noexcept = default;
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  Cursor(Cursor&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Cursor& operator=(Cursor&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~Cursor() { reset(); }

  HANDLE native_handle() const noexcept { return handle_; }
  explicit operator bool() const noexcept { return handle_ != nullptr; }
  void reset() noexcept {
    if (handle_ != nullptr) MQCloseCursor(std::exchange(handle_, nullptr));
  }

 private:
  friend class Queue;
  explicit Cursor(HANDLE h) noexcept : handle_(h) {}
  HANDLE handle_ = nullptr;
};

class Queue {
 public:
  // MQCreateQueue of a private queue ".\private$\NAME"; returns its format name. `label` may
  // be empty (no PROPID_Q_LABEL); `authenticate` sets PROPID_Q_AUTHENTICATE (MQ_AUTHENTICATE:
  // unsigned messages are rejected on receive). Throws mqsec::Error (MQ_ERROR_QUEUE_EXISTS, ...).
  static std::string create(std::string_view path, std::string_view label = {},
                            bool authenticate = false, bool transactional = false) {
    std::wstring wpath = detail::to_wide(path, MQ_ERROR_ILLEGAL_QUEUE_PATHNAME, "the path name");
    std::wstring wlabel = detail::to_wide(label, MQ_ERROR_ILLEGAL_PROPERTY_VALUE, "the label");
    QUEUEPROPID ids[4];
    MQPROPVARIANT vars[4] = {};
    HRESULT status[4] = {};
    DWORD n = 0;
    ids[n] = PROPID_Q_PATHNAME;
    vars[n].vt = VT_LPWSTR;
    vars[n++].pwszVal = wpath.data();
    if (!wlabel.empty()) {
      ids[n] = PROPID_Q_LABEL;
      vars[n].vt = VT_LPWSTR;
      vars[n++].pwszVal = wlabel.data();
    }
    ids[n] = PROPID_Q_AUTHENTICATE;
    vars[n].vt = VT_UI1;
    vars[n++].bVal = authenticate ? MQ_AUTHENTICATE : MQ_AUTHENTICATE_NONE;
    if (transactional) {
      ids[n] = PROPID_Q_TRANSACTION;
      vars[n].vt = VT_UI1;
      vars[n++].bVal = MQ_TRANSACTIONAL;
    }
    MQQUEUEPROPS props{n, ids, vars, status};
    std::wstring format(256, L'\0');
    DWORD len = static_cast<DWORD>(format.size());
    HRESULT hr = MQCreateQueue(nullptr, &props, format.data(), &len);
    detail::check(hr, "MQCreateQueue", path);
    // The queue exists now; a format name longer than our buffer is asked for separately.
    if (hr == MQ_INFORMATION_FORMATNAME_BUFFER_TOO_SMALL) return path_to_format_name(path);
    return detail::to_utf8(std::wstring_view(format.c_str()));
  }

  // MQDeleteQueue (format name or path name). Open handles of the queue then fail with
  // MQ_ERROR_QUEUE_DELETED or similar. Throws mqsec::Error.
  static void remove(std::string_view format_or_path) {
    std::string format = format_of(format_or_path);
    std::wstring w = detail::to_wide(format, MQ_ERROR_ILLEGAL_FORMATNAME, "the format name");
    detail::check(MQDeleteQueue(w.c_str()), "MQDeleteQueue", format);
  }

  // MQOpenQueue. `format_or_path` is a format name, or a path name that is first resolved with
  // MQPathNameToFormatName. access: MQ_SEND_ACCESS, MQ_RECEIVE_ACCESS or MQ_PEEK_ACCESS
  // (optionally | MQ_ADMIN_ACCESS); share: MQ_DENY_NONE or MQ_DENY_RECEIVE_SHARE. Throws
  // mqsec::Error.
  static Queue open(std::string_view format_or_path, DWORD access, DWORD share = MQ_DENY_NONE) {
    std::string format = format_of(format_or_path);
    std::wstring w = detail::to_wide(format, MQ_ERROR_ILLEGAL_FORMATNAME, "the format name");
    QUEUEHANDLE h = nullptr;
    detail::check(MQOpenQueue(w.c_str(), access, share, &h), "MQOpenQueue", format);
    return Queue(h, std::move(format));
  }

  // An empty object that owns no handle; what a moved-from Queue becomes.
  Queue() noexcept = default;
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
  Queue(Queue&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), format_(std::move(other.format_)) {}
  Queue& operator=(Queue&& other) noexcept {
    if (this != &other) {
      if (handle_ != nullptr) MQCloseQueue(handle_);
      handle_ = std::exchange(other.handle_, nullptr);
      format_ = std::move(other.format_);
    }
    return *this;
  }
  // Closes the handle (MQCloseQueue); errors are ignored here, call close() to see them.
  ~Queue() {
    if (handle_ != nullptr) MQCloseQueue(handle_);
  }

  // MQCloseQueue now. Throws mqsec::Error; the object is empty afterwards either way.
  void close() {
    if (handle_ == nullptr) return;
    detail::check(MQCloseQueue(std::exchange(handle_, nullptr)), "MQCloseQueue", format_);
  }

  QUEUEHANDLE native_handle() const noexcept { return handle_; }
  explicit operator bool() const noexcept { return handle_ != nullptr; }
  const std::string& format_name() const noexcept { return format_; }

  // MQSendMessage; returns the new message's id. `transaction`: MQ_NO_TRANSACTION or
  // MQ_SINGLE_MESSAGE (durable like a recoverable message). Throws mqsec::Error; the message
  // names the rejected property when there is one.
  MessageId send(const Message& message, ITransaction* transaction = MQ_NO_TRANSACTION) {
    detail::SendProperties props(message);
    HRESULT hr = MQSendMessage(handle_, props.get(), transaction);
    detail::check(hr, "MQSendMessage", props.failed_property());
    return props.message_id();
  }

  // Takes the first message (priority order, then arrival), waiting up to `timeout`
  // (kInfinite: forever; 0: only look). std::nullopt on timeout. Throws mqsec::Error.
  std::optional<ReceivedMessage> receive(std::chrono::milliseconds timeout = kInfinite) {
    return receive_impl(timeout, MQ_ACTION_RECEIVE, nullptr);
  }
  // Like receive, but leaves the message in the queue (MQ_ACTION_PEEK_CURRENT).
  std::optional<ReceivedMessage> peek(std::chrono::milliseconds timeout = kInfinite) {
    return receive_impl(timeout, MQ_ACTION_PEEK_CURRENT, nullptr);
  }

  // MQCreateCursor. Throws mqsec::Error.
  Cursor create_cursor() {
    HANDLE h = nullptr;
    detail::check(MQCreateCursor(handle_, &h), "MQCreateCursor", format_);
    return Cursor(h);
  }
  // The message under the cursor (the first one if the cursor is new), left in the queue.
  std::optional<ReceivedMessage> peek_current(Cursor& cursor,
                                              std::chrono::milliseconds timeout = kInfinite) {
    return receive_impl(timeout, MQ_ACTION_PEEK_CURRENT, cursor.native_handle());
  }
  // Moves the cursor to the next message and returns it, left in the queue.
  std::optional<ReceivedMessage> peek_next(Cursor& cursor,
                                           std::chrono::milliseconds timeout = kInfinite) {
    return receive_impl(timeout, MQ_ACTION_PEEK_NEXT, cursor.native_handle());
  }
  // Takes the message under the cursor.
  std::optional<ReceivedMessage> receive_current(Cursor& cursor,
                                                 std::chrono::milliseconds timeout = kInfinite) {
    return receive_impl(timeout, MQ_ACTION_RECEIVE, cursor.native_handle());
  }

 private:
  Queue(QUEUEHANDLE h, std::string format) noexcept : handle_(h), format_(std::move(format)) {}

  static std::string format_of(std::string_view format_or_path) {
    return is_format_name(format_or_path) ? std::string(format_or_path)
                                          : path_to_format_name(format_or_path);
  }

  std::optional<ReceivedMessage> receive_impl(std::chrono::milliseconds timeout, DWORD action,
                                              HANDLE cursor) {
    using Clock = std::chrono::steady_clock;
    const DWORD mq_timeout = detail::to_mq_timeout(timeout);
    const auto deadline = Clock::now() + std::min(timeout, std::chrono::milliseconds(INFINITE));
    detail::ReceiveProperties props;
    // Each retry follows a report of bigger sizes; a handful covers other receivers taking the
    // message in between and a bigger one turning up first.
    constexpr int kMaxAttempts = 8;
    for (int attempt = 1;; ++attempt) {
      DWORD wait = mq_timeout;
      if (attempt > 1 && wait != INFINITE) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        wait = static_cast<DWORD>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
      }
      HRESULT hr = MQReceiveMessage(handle_, wait, action, props.prepare(), nullptr, nullptr,
                                    cursor, MQ_NO_TRANSACTION);
      if (hr == MQ_ERROR_IO_TIMEOUT) return std::nullopt;
      if (detail::ReceiveProperties::is_buffer_error(hr) && attempt < kMaxAttempts &&
          props.grow()) {
        // The message stayed. PEEK_NEXT already moved the cursor onto it: look at it again.
        if (action == MQ_ACTION_PEEK_NEXT) action = MQ_ACTION_PEEK_CURRENT;
        continue;
      }
      detail::check(hr, "MQReceiveMessage", format_);
      return props.take();
    }
  }

  QUEUEHANDLE handle_ = nullptr;
  std::string format_;
};

}  // namespace mqsec
