// Test support: one signed message through the C API (mq.h) and what the receiver is told about
// it. An authenticating queue made with MQCreateQueue, a message sent with
// MQMSG_AUTH_LEVEL_ALWAYS and a security context for a token certificate, and a receive that
// reads PROPID_M_AUTHENTICATED, PROPID_M_MQSEC_SENDER_CONFIRMED and PROPID_M_MQSEC_TRUST.
#pragma once

#include <mq.h>

#include <string>

#include "tests/support/softhsm_env.hpp"

namespace mqsec::testing {

// MQCreateQueue of .\private$\<name> with MQ_AUTHENTICATE; returns its format name. Throws
// std::runtime_error with the HRESULT when creation fails.
std::wstring create_authenticated_queue(const std::string& name);

// Sends `body` to `format`, signed with a context for the token certificate `der`. Records a
// test failure (and returns) when the context, the open or the send fails.
void send_signed(const std::wstring& format, const Bytes& der, const std::string& body);

// The outcome of one receive and the trust properties of the message received.
struct ReceivedTrust {
  HRESULT hr = MQ_OK;  // of MQOpenQueue, then of MQReceiveMessage
  UCHAR authenticated = 0;
  UCHAR confirmed = 0;  // PROPID_M_MQSEC_SENDER_CONFIRMED
  ULONG trust = 0;      // PROPID_M_MQSEC_TRUST bits
};

// Opens `format` for receiving and receives one message without waiting (timeout 0).
ReceivedTrust receive_with_trust(const std::wstring& format);

}  // namespace mqsec::testing
