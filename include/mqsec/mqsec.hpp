// mqsec's C++ API in one include: RAII wrappers over the MSMQ C API of mq.h (libmqrt).
//
//   mqsec::SecurityContext  MQGetSecurityContextEx / MQFreeSecurityContext
//   mqsec::Message          PROPID_M_* properties to send, attach_current_security_context()
//   mqsec::ReceivedMessage  what MQReceiveMessage returned, with the verified sender
//   mqsec::Queue, Cursor    MQCreateQueue ... MQReceiveMessage, MQCreateCursor / MQCloseCursor
//   mqsec::Error            the exception every wrapper throws: HRESULT + reason
//
// Header-only; link with -lmqrt and nothing else. See docs/cpp-api.md.
#pragma once

#include "mqsec/error.hpp"
#include "mqsec/message.hpp"
#include "mqsec/queue.hpp"
#include "mqsec/security_context.hpp"
