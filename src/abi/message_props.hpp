// MQMSGPROPS <-> envelope: MSMQ's property arrays, their types (VT_*) and per-property status.
#pragma once

#include <mq.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/core/queue.hpp"
#include "src/security/envelope.hpp"
#include "src/security/message_auth.hpp"

namespace mqsec::abi {

// What MQSendMessage's properties ask for, besides the envelope fields.
// (the message itself, for the core, and where the caller wants the results).
struct SendRequest : core::Outgoing {
  MQPROPVARIANT* msgid_out = nullptr;  // PROPID_M_MSGID: filled with the new id
  HRESULT overall = MQ_OK;             // MQ_OK or MQ_INFORMATION_PROPERTY (warnings)
};

// Parses send properties. Sets aStatus[i] when given. Throws mqsec::Error with the first
// failing property's code (MQ_ERROR_ILLEGAL_PROPID, _ILLEGAL_PROPERTY_VT, _ILLEGAL_PROPERTY_VALUE,
// _ILLEGAL_PROPERTY_SIZE, _LABEL_TOO_LONG, _ILLEGAL_FORMATNAME,
// _UNSUPPORTED_FORMATNAME_OPERATION for response/admin queues on other machines,
// _INVALID_PARAMETER).
SendRequest parse_send(MQMSGPROPS* props);

// What the receiver learns about a message besides its envelope.
using Received = core::Delivered;

// Checks the receive properties (ids and types) before anything is taken from the queue.
// Throws mqsec::Error (MQ_ERROR_ILLEGAL_PROPID, MQ_ERROR_ILLEGAL_PROPERTY_VT, ...).
void check_receive(MQMSGPROPS* props);
// Fills the receive properties. Returns MQ_OK, MQ_INFORMATION_PROPERTY, or a buffer error
// (MQ_ERROR_BUFFER_OVERFLOW, MQ_ERROR_LABEL_BUFFER_TOO_SMALL, MQ_ERROR_SENDERID_BUFFER_TOO_SMALL,
// MQ_ERROR_SENDER_CERT_BUFFER_TOO_SMALL, MQ_ERROR_SIGNATURE_BUFFER_TOO_SMALL,
// MQ_ERROR_FORMATNAME_BUFFER_TOO_SMALL): then the needed sizes are filled in and the caller
// must leave the message in the queue.
HRESULT fill_receive(MQMSGPROPS* props, const Received& msg);
// Frees what a successful fill_receive allocated (GUIDs asked for as VT_NULL) when the message
// it was filled from is not delivered after all (another receiver took it): `original` is the
// caller's array before the fill.
void release_fill(MQMSGPROPS* props, const std::vector<MQPROPVARIANT>& original);

}  // namespace mqsec::abi
