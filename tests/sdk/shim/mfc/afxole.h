// afxole.h: see afxwin.h (tests/sdk MFC declarations for compiling the MSMQ SDK samples).
#include "afxwin.h"
