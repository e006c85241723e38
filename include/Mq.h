/* Mq.h: the same header as mq.h. Windows' file names are case-insensitive and MSMQ programs
 * spell this include both ways; Linux's are not, so this spelling forwards to mq.h. */
#include "mq.h"
