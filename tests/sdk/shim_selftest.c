/*
 * The Win32 shim's own test (ctest sdk_shim_selftest): mq.h before windows.h and tchar.h here
 * (shim_selftest_cxx.cpp: the other order, in C++), Microsoft's wide format rules in
 * _snwprintf_s and swprintf_s, GetComputerName, fgets and fgetws in turn on one stream, and the
 * _s string functions' truncation.
 */
#include <mq.h>
#define UNICODE
#define _UNICODE
#include <tchar.h>
#include <windows.h>

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
}

int main(void) {
  wide_formats();
  computer_name();
  mixed_stream();
  safe_strings();
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
