// Asynchronous receive for the C API: how MQReceiveMessage and MQReceiveMessageByLookupId hand
// a receive to a runtime thread (core/async_receive.hpp) and report its completion MSMQ's way
// (the callback, or the OVERLAPPED's Internal and hEvent); async_api.cpp also has
// MQGetOverlappedResult and the event functions (MQSecCreateEvent ...).
#pragma once

#include <mq.h>

#include <functional>
#include <memory>
#include <stop_token>

#include "src/core/queue.hpp"

namespace mqsec::abi {

// What an asynchronous receive reports back with: the arguments the callback gets.
struct AsyncTarget {
  QUEUEHANDLE queue_handle = nullptr;
  DWORD timeout = 0;
  DWORD action = 0;
  MQMSGPROPS* props = nullptr;
  LPOVERLAPPED overlapped = nullptr;
  PMQRECEIVECALLBACK callback = nullptr;
  HANDLE cursor_handle = nullptr;
};

// Checks the OVERLAPPED (its hEvent NULL or a live event: else MQ_ERROR_INVALID_PARAMETER),
// marks it pending and resets its event, and starts `receive` on a runtime thread. Returns
// MQ_INFORMATION_OPERATION_PENDING; the result goes to the callback, or to the OVERLAPPED.
HRESULT start_async_receive(const std::shared_ptr<core::Queue>& queue, const AsyncTarget& target,
                            std::function<HRESULT(std::stop_token)> receive);

}  // namespace mqsec::abi
