/*
 * tchar.h: the generic-text mappings of Microsoft's C runtime, as far as the MSMQ SDK samples
 * use them (tests/sdk). With _UNICODE the _t names are the wide functions (Microsoft's format
 * rules: windows.h), else the narrow ones. _tmain with _UNICODE is wmain, which win32_wmain.c
 * calls from main with the arguments converted.
 */
#ifndef MQSEC_SDK_SHIM_TCHAR_H
#define MQSEC_SDK_SHIM_TCHAR_H

#include "windows.h"

#ifdef _UNICODE
#define __T(x) L##x
#define _tmain wmain
#define _tprintf wprintf
#define _ftprintf fwprintf
#define _stprintf_s swprintf_s
#define _sntprintf_s _snwprintf_s
#define _tcslen wcslen
#define _tcscpy wcscpy
#define _tcscpy_s wcscpy_s
#define _tcscat_s wcscat_s
#define _tcsncpy_s wcsncpy_s
#define _tcsncat_s wcsncat_s
#define _vsntprintf_s _vsnwprintf_s
#define _tcscmp wcscmp
#define _tcsicmp _wcsicmp
#define _fgetts fgetws
#define _tcstol wcstol
#define _ttoi(s) ((int)wcstol((s), NULL, 10))
#ifdef __cplusplus
extern "C" int wmain(int argc, wchar_t* argv[]);
#else
int wmain(int argc, wchar_t* argv[]);
#endif
#else
#define __T(x) x
#define _tmain main
#define _tprintf printf
#define _ftprintf fprintf
#define _stprintf_s sprintf_s
#define _sntprintf_s _snprintf_s
#define _tcslen strlen
#define _tcscpy strcpy
#define _tcscpy_s strcpy_s
#define _tcscat_s strcat_s
#define _tcsncpy_s strncpy_s
#define _tcsncat_s strncat_s
#define _vsntprintf_s _vsnprintf_s
#define _tcscmp strcmp
#define _tcsicmp _stricmp
#define _fgetts fgets
#define _tcstol strtol
#define _ttoi atoi
#endif
#define _T(x) __T(x)
#define _TEXT(x) __T(x)

#endif /* MQSEC_SDK_SHIM_TCHAR_H */
