/*
 * The Win32 shim's own test (ctest sdk_shim_selftest): mq.h before windows.h and tchar.h here
 * (shim_selftest_cxx.cpp: the other order, in C++; both with transact.h where include/ has it),
 * Microsoft's wide format rules in _snwprintf_s and swprintf_s, GetComputerName, fgets and fgetws
 * in turn on one stream, the _s string and conversion functions' truncation, and sscanf_s.
 */
#include <mq.h>
/* mqsec's transact.h, once there is one, before the shim too (it shares winerror.h's S_OK,
 * E_FAIL, E_INVALIDARG with windows.h, both guarded). */
#if defined(__has_include)
#if __has_include(<transact.h>)
#include <transact.h>
#endif
#endif
#define UNICODE
#define _UNICODE
#include <tchar.h>
#include <windows.h>

#include <errno.h>
#include <unistd.h>

int shim_selftest_cxx(void);

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static void wide_formats(void) {
  wchar_t buf[64];
  /* %s wide, %S narrow, %hs narrow, %ls wide; %c wide, %C narrow. */
  CHECK(_snwprintf_s(buf, 64, 63, L"%s|%S|%hs|%ls|%c|%C", L"wide", "narrow", "h", L"l", L'w',
                     'n') == 19);
  CHECK(wcscmp(buf, L"wide|narrow|h|l|w|n") == 0);
  /* l on an integer is 32 bits (a LONG), I64 and ll 64; %% stays. */
  LONG l = -5;
  CHECK(swprintf_s(buf, 64, L"%ld %lu %I64d %lld %d%%", l, (ULONG)7, -(LONGLONG)1099511627776,
                   (LONGLONG)3, 9) > 0);
  CHECK(wcscmp(buf, L"-5 7 -1099511627776 3 9%") == 0);
  /* Truncation: -1 and a terminated prefix. */
  CHECK(_snwprintf_s(buf, 64, 4, L"%s", L"abcdefgh") == -1);
  CHECK(wcscmp(buf, L"abcd") == 0);
  CHECK(_snwprintf_s(buf, 5, _TRUNCATE, L"%S", "abcdefgh") == -1);
  CHECK(wcscmp(buf, L"abcd") == 0);
  /* _T and TCHAR under _UNICODE. */
  TCHAR t[8];
  CHECK(_stprintf_s(t, 8, _T("%s"), _T("tc")) == 2 && _tcscmp(t, L"tc") == 0);
}

static void computer_name(void) {
  char a[MAX_COMPUTERNAME_LENGTH + 1];
  WCHAR w[MAX_COMPUTERNAME_LENGTH + 1];
  DWORD n = sizeof a;
  setenv("COMPUTERNAME", "SHIMHOST", 1);
  CHECK(GetComputerNameA(a, &n) && n == 8 && strcmp(a, "SHIMHOST") == 0);
  n = MAX_COMPUTERNAME_LENGTH + 1;
  CHECK(GetComputerNameW(w, &n) && n == 8 && wcscmp(w, L"SHIMHOST") == 0);
  n = 4; /* too small: fails, says how much is needed */
  CHECK(!GetComputerNameA(a, &n) && n == 9 && GetLastError() == ERROR_BUFFER_OVERFLOW);
  unsetenv("COMPUTERNAME");
  n = sizeof a;
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  if (strchr(host, '.') != NULL) *strchr(host, '.') = '\0';
  if (strlen(host) <= MAX_COMPUTERNAME_LENGTH) {
    CHECK(GetComputerName(w, &n) && n == strlen(host));
  }
}

static void mixed_stream(void) {
  FILE* f = tmpfile();
  CHECK(f != NULL);
  if (f == NULL) return;
  fputs("wide line\nnarrow line\nwide again\n", f);
  rewind(f);
  wchar_t w[32];
  char c[32];
  CHECK(fgetws(w, 32, f) != NULL && wcscmp(w, L"wide line\n") == 0);
  CHECK(fgets(c, 32, f) != NULL && strcmp(c, "narrow line\n") == 0);
  CHECK(fgetws(w, 5, f) != NULL && wcscmp(w, L"wide") == 0); /* n - 1 characters */
  CHECK(fgets(c, 32, f) != NULL && strcmp(c, " again\n") == 0);
  CHECK(fgetws(w, 32, f) == NULL);
  fclose(f);
}

static void safe_strings(void) {
  char s[6];
  CHECK(strcpy_s(s, sizeof s, "abc") == 0 && strcat_s(s, sizeof s, "de") == 0);
  CHECK(strcmp(s, "abcde") == 0);
  CHECK(strcat_s(s, sizeof s, "f") != 0 && s[0] == '\0');
  CHECK(sprintf_s(s, sizeof s, "%d", 123456) == -1 && s[0] == '\0');
  CHECK(_stricmp("QUIT", "quit") == 0 && _wcsicmp(L"Quit", L"qUIT") == 0);
  char n[5];
  CHECK(strncpy_s(n, sizeof n, "abcdef", 2) == 0 && strcmp(n, "ab") == 0);
  CHECK(strncat_s(n, sizeof n, "cdef", _TRUNCATE) == STRUNCATE && strcmp(n, "abcd") == 0);
  CHECK(strncpy_s(n, sizeof n, "abcdef", 6) == ERANGE && n[0] == '\0');
  wchar_t wn[5];
  CHECK(wcsncpy_s(wn, 5, L"xyz", _TRUNCATE) == 0 && wcsncat_s(wn, 5, L"uvw", 1) == 0);
  CHECK(wcscmp(wn, L"xyzu") == 0);
  size_t converted = 0;
  CHECK(mbstowcs_s(&converted, wn, 5, "queue", _TRUNCATE) == STRUNCATE && converted == 5);
  CHECK(wcscmp(wn, L"queu") == 0);
  CHECK(mbstowcs_s(&converted, wn, 5, "q", _TRUNCATE) == 0 && converted == 2);
  CHECK(mbstowcs_s(&converted, wn, 5, "queue", 5) == ERANGE && wn[0] == L'\0');
  CHECK(wcstombs_s(&converted, n, sizeof n, L"path", _TRUNCATE) == 0 && converted == 5);
  CHECK(strcmp(n, "path") == 0);
  CHECK(wcstombs_s(&converted, n, sizeof n, L"pathname", 8) == ERANGE && n[0] == '\0');
}

/* Microsoft's sscanf_s: %ld fills a 32-bit LONG (c_draw's line coordinates); the conversions
 * that take a size argument there are refused. */
static void scanning(void) {
  LONG v[4] = {0, 0, 0, 0};
  LONG guard = 0x12345678;
  CHECK(sscanf_s("0000012-00003400000560000078", "%07ld%07ld%07ld%07ld", &v[0], &v[1], &v[2],
                 &v[3]) == 4);
  CHECK(v[0] == 12 && v[1] == -34 && v[2] == 56 && v[3] == 78 && guard == 0x12345678);
  LONGLONG big = 0;
  CHECK(sscanf_s("-1099511627776", "%I64d", &big) == 1 && big == -(LONGLONG)1099511627776);
  char text[8];
  CHECK(sscanf_s("word", "%s", text, (unsigned)sizeof text) == EOF);
}

int main(void) {
  wide_formats();
  computer_name();
  mixed_stream();
  safe_strings();
  scanning();
  /* mq.h's types are the shim's: a GUID of either is the other's. */
  CLSID id = {0xc30e0960, 0xa2c0, 0x11cf, {0x97, 0x85, 0x0, 0x60, 0x8c, 0xb3, 0xe8, 0xc}};
  MQPROPVARIANT v;
  v.vt = VT_CLSID;
  v.puuid = &id;
  CHECK(v.puuid->Data1 == 0xc30e0960u && sizeof(DWORD) == 4 && sizeof(LONG) == 4);
  CHECK(SUCCEEDED(MQ_OK) && FAILED(MQ_ERROR));
  failures += shim_selftest_cxx();
  if (failures == 0) printf("shim: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
