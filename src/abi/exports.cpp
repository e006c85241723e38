// libmqrt's own translation unit: the MQ* entry points come from mqsec_abi, linked whole.
// Kept so the shared library target has a source of its own.
#include <mq.h>
