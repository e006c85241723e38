// The shim in C++ with windows.h and tchar.h (narrow: no _UNICODE) before mq.h (ctest
// sdk_shim_selftest; shim_selftest.c has the other order). <cstdio> and <cwchar> come after
// windows.h on purpose: its fgetws and wprintf macros must not break their using-declarations.
#include <tchar.h>
#include <windows.h>

#include <cstdio>
#include <cstring>
#include <cwchar>
#include <mq.h>
#if __has_include(<transact.h>)
#include <transact.h>
#endif

extern "C" int shim_selftest_cxx(void) {
  int failures = 0;
  TCHAR name[MAX_COMPUTERNAME_LENGTH + 1];
  DWORD n = MAX_COMPUTERNAME_LENGTH + 1;
  setenv("COMPUTERNAME", "CXXHOST", 1);
  if (!GetComputerName(name, &n) || _tcscmp(name, _T("CXXHOST")) != 0) failures++;
  unsetenv("COMPUTERNAME");
  WCHAR path[64];
  if (_snwprintf_s(path, 64, _TRUNCATE, L"%S\\private$\\%s", name, L"q") < 0 ||
      std::wcscmp(path, L"CXXHOST\\private$\\q") != 0)
    failures++;
  GUID g = {};
  MQPROPVARIANT v = {};
  v.vt = VT_CLSID;
  v.puuid = &g;
  if (v.puuid != &g || !SUCCEEDED(S_OK)) failures++;
  if (failures != 0) std::fprintf(stderr, "shim_selftest_cxx: %d checks failed\n", failures);
  return failures;
}
