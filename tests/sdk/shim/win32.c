/*
 * win32.c: the functions of the Win32 shim (windows.h) for the MSMQ SDK samples in tests/sdk.
 * Nothing here is MSMQ: the samples' MSMQ calls go to libmqrt.
 */
#define _GNU_SOURCE
#include "windows.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <strings.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The macros of windows.h would rename what this file calls. */
#undef fgetws
#undef wprintf
#undef fwprintf

static __thread DWORD last_error;

DWORD WINAPI GetLastError(void) { return last_error; }

void WINAPI SetLastError(DWORD dwErrCode) { last_error = dwErrCode; }

void WINAPI Sleep(DWORD dwMilliseconds) {
  struct timespec ts = {(time_t)(dwMilliseconds / 1000), (long)(dwMilliseconds % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

DWORD WINAPI GetCurrentThreadId(void) { return (DWORD)syscall(SYS_gettid); }

DWORD WINAPI GetTickCount(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (DWORD)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* The name GetComputerName gives: $COMPUTERNAME, else the host name up to its first dot. */
static int computer_name(char* out, size_t size) {
  const char* env = getenv("COMPUTERNAME");
  if (env != NULL && env[0] != '\0') {
    if (strlen(env) >= size) return -1;
    strcpy(out, env);
    return 0;
  }
  if (gethostname(out, size) != 0) return -1;
  out[size - 1] = '\0';
  char* dot = strchr(out, '.');
  if (dot != NULL) *dot = '\0';
  return 0;
}

BOOL WINAPI GetComputerNameA(LPSTR lpBuffer, LPDWORD nSize) {
  char name[256];
  if (nSize == NULL || computer_name(name, sizeof name) != 0) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  size_t len = strlen(name);
  if (lpBuffer == NULL || len + 1 > *nSize) {
    *nSize = (DWORD)(len + 1);
    SetLastError(ERROR_BUFFER_OVERFLOW);
    return FALSE;
  }
  memcpy(lpBuffer, name, len + 1);
  *nSize = (DWORD)len;
  return TRUE;
}

BOOL WINAPI GetComputerNameW(LPWSTR lpBuffer, LPDWORD nSize) {
  char name[256];
  if (nSize == NULL || computer_name(name, sizeof name) != 0) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  size_t len = strlen(name);
  if (lpBuffer == NULL || len + 1 > *nSize) {
    *nSize = (DWORD)(len + 1);
    SetLastError(ERROR_BUFFER_OVERFLOW);
    return FALSE;
  }
  for (size_t i = 0; i <= len; i++) lpBuffer[i] = (wchar_t)(unsigned char)name[i];
  *nSize = (DWORD)len;
  return TRUE;
}

int _stricmp(const char* a, const char* b) { return strcasecmp(a, b); }

int _strnicmp(const char* a, const char* b, size_t n) { return strncasecmp(a, b, n); }

int _wcsicmp(const wchar_t* a, const wchar_t* b) { return wcscasecmp(a, b); }

/* Microsoft's wide format -> ISO C's: in Microsoft's wide functions %s/%c are wide and %S/%C
 * narrow, h forces narrow and l/w wide; l on an integer is 32 bits (long is 32 bits there),
 * I64 is 64 and I is pointer-sized. Returns NULL when the format is too long to translate. */
static wchar_t* translate_wide_format(const wchar_t* in, wchar_t* out, size_t size) {
  size_t o = 0;
#define PUT(c)                      \
  do {                              \
    if (o + 1 >= size) return NULL; \
    out[o++] = (c);                 \
  } while (0)
  while (*in != L'\0') {
    if (*in != L'%') {
      PUT(*in++);
      continue;
    }
    PUT(*in++);
    if (*in == L'%') {
      PUT(*in++);
      continue;
    }
    while (*in != L'\0' && wcschr(L"-+ #0123456789.*", *in) != NULL) PUT(*in++);
    int narrow = 0, wide = 0, longs = 0, size64 = 0, sizeptr = 0;
    for (;;) {
      if (*in == L'h') {
        narrow = 1;
        in++;
      } else if (*in == L'w') {
        wide = 1;
        in++;
      } else if (*in == L'l') {
        longs++;
        in++;
      } else if (in[0] == L'I' && in[1] == L'6' && in[2] == L'4') {
        size64 = 1;
        in += 3;
      } else if (in[0] == L'I' && in[1] == L'3' && in[2] == L'2') {
        in += 3;
      } else if (*in == L'I') {
        sizeptr = 1;
        in++;
      } else if (*in == L'z' || *in == L'j' || *in == L't' || *in == L'L') {
        PUT(*in++);
      } else {
        break;
      }
    }
    wchar_t conv = *in;
    if (conv == L'\0') break;
    in++;
    switch (conv) {
      case L's':
      case L'c':
        if (!narrow) PUT(L'l');
        PUT(conv);
        break;
      case L'S':
      case L'C':
        if (wide || longs > 0) PUT(L'l');
        PUT(conv == L'S' ? L's' : L'c');
        break;
      case L'd':
      case L'i':
      case L'u':
      case L'x':
      case L'X':
      case L'o':
        if (size64 || longs >= 2) {
          PUT(L'l');
          PUT(L'l');
        } else if (sizeptr) {
          PUT(L'z');
        } else if (narrow) {
          PUT(L'h');
        }
        PUT(conv);
        break;
      default:
        if (longs == 1 && conv == L'f') PUT(L'l');
        PUT(conv);
        break;
    }
  }
  out[o] = L'\0';
  return out;
#undef PUT
}

/* Microsoft's narrow scanf format -> ISO C's: l on an integer is 32 bits, I64 is 64. NULL when
 * the format has %s, %c or %[ (a size argument follows each in Microsoft's scanf_s) or is too
 * long. */
static char* translate_scanf_format(const char* in, char* out, size_t size) {
  size_t o = 0;
#define PUT(c)                      \
  do {                              \
    if (o + 1 >= size) return NULL; \
    out[o++] = (c);                 \
  } while (0)
  while (*in != '\0') {
    if (*in != '%') {
      PUT(*in++);
      continue;
    }
    PUT(*in++);
    if (*in == '%') {
      PUT(*in++);
      continue;
    }
    while (*in != '\0' && strchr("*0123456789", *in) != NULL) PUT(*in++);
    int longs = 0, size64 = 0, shorts = 0;
    for (;;) {
      if (*in == 'l') {
        longs++;
        in++;
      } else if (*in == 'h') {
        shorts++;
        in++;
      } else if (in[0] == 'I' && in[1] == '6' && in[2] == '4') {
        size64 = 1;
        in += 3;
      } else if (in[0] == 'I' && in[1] == '3' && in[2] == '2') {
        in += 3;
      } else {
        break;
      }
    }
    char conv = *in;
    if (conv == '\0') break;
    in++;
    if (conv == 's' || conv == 'c' || conv == '[' || conv == 'S' || conv == 'C') return NULL;
    if (strchr("diouxXn", conv) != NULL) {
      if (size64 || longs >= 2) {
        PUT('l');
        PUT('l');
      } else {
        for (int i = 0; i < shorts && i < 2; i++) PUT('h');
      }
    } else if (longs > 0) {
      PUT('l'); /* %lf: double */
    }
    PUT(conv);
  }
  out[o] = '\0';
  return out;
#undef PUT
}

int scanf_s(const char* format, ...) {
  char translated[512];
  if (format == NULL || translate_scanf_format(format, translated, sizeof translated) == NULL)
    return EOF;
  va_list ap;
  va_start(ap, format);
  int n = vscanf(translated, ap);
  va_end(ap);
  return n;
}

int sscanf_s(const char* buffer, const char* format, ...) {
  char translated[512];
  if (buffer == NULL || format == NULL ||
      translate_scanf_format(format, translated, sizeof translated) == NULL)
    return EOF;
  va_list ap;
  va_start(ap, format);
  int n = vsscanf(buffer, translated, ap);
  va_end(ap);
  return n;
}

static int vformat_wide(wchar_t* buffer, size_t size, const wchar_t* format, va_list ap) {
  wchar_t translated[1024];
  if (translate_wide_format(format, translated, sizeof translated / sizeof translated[0]) == NULL)
    return -1;
  return vswprintf(buffer, size, translated, ap);
}

int _snwprintf_s(wchar_t* buffer, size_t sizeOfBuffer, size_t count, const wchar_t* format, ...) {
  if (buffer == NULL || sizeOfBuffer == 0 || format == NULL) return -1;
  size_t size = count == _TRUNCATE || count + 1 > sizeOfBuffer ? sizeOfBuffer : count + 1;
  va_list ap;
  va_start(ap, format);
  int n = vformat_wide(buffer, size, format, ap);
  va_end(ap);
  if (n < 0) buffer[size - 1] = L'\0'; /* truncated (or an encoding error): -1 as Microsoft's */
  return n < 0 ? -1 : n;
}

int _snwprintf(wchar_t* buffer, size_t count, const wchar_t* format, ...) {
  if (buffer == NULL || count == 0 || format == NULL) return -1;
  va_list ap;
  va_start(ap, format);
  int n = vformat_wide(buffer, count, format, ap);
  va_end(ap);
  return n;
}

int swprintf_s(wchar_t* buffer, size_t sizeOfBuffer, const wchar_t* format, ...) {
  if (buffer == NULL || sizeOfBuffer == 0 || format == NULL) return -1;
  va_list ap;
  va_start(ap, format);
  int n = vformat_wide(buffer, sizeOfBuffer, format, ap);
  va_end(ap);
  if (n < 0) buffer[0] = L'\0';
  return n;
}

static int vprint_wide(FILE* stream, const wchar_t* format, va_list ap) {
  wchar_t out[4096];
  int n = vformat_wide(out, sizeof out / sizeof out[0], format, ap);
  if (n < 0) return -1;
  /* Written as bytes, so the stream stays byte-oriented (as printf leaves it). */
  return fprintf(stream, "%ls", out) < 0 ? -1 : n;
}

int mqsec_shim_wprintf(const wchar_t* format, ...) {
  va_list ap;
  va_start(ap, format);
  int n = vprint_wide(stdout, format, ap);
  va_end(ap);
  return n;
}

int mqsec_shim_fwprintf(FILE* stream, const wchar_t* format, ...) {
  va_list ap;
  va_start(ap, format);
  int n = vprint_wide(stream, format, ap);
  va_end(ap);
  return n;
}

int sprintf_s(char* buffer, size_t sizeOfBuffer, const char* format, ...) {
  if (buffer == NULL || sizeOfBuffer == 0 || format == NULL) return -1;
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(buffer, sizeOfBuffer, format, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeOfBuffer) {
    buffer[0] = '\0';
    return -1;
  }
  return n;
}

int _snprintf_s(char* buffer, size_t sizeOfBuffer, size_t count, const char* format, ...) {
  if (buffer == NULL || sizeOfBuffer == 0 || format == NULL) return -1;
  size_t size = count == _TRUNCATE || count + 1 > sizeOfBuffer ? sizeOfBuffer : count + 1;
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(buffer, size, format, ap);
  va_end(ap);
  return n < 0 || (size_t)n >= size ? -1 : n;
}

int strcpy_s(char* dest, size_t size, const char* src) {
  if (dest == NULL || src == NULL || size == 0) return EINVAL;
  if (strlen(src) >= size) {
    dest[0] = '\0';
    return ERANGE;
  }
  strcpy(dest, src);
  return 0;
}

int strcat_s(char* dest, size_t size, const char* src) {
  if (dest == NULL || src == NULL || size == 0) return EINVAL;
  size_t have = strnlen(dest, size);
  if (have == size || have + strlen(src) >= size) {
    dest[0] = '\0';
    return ERANGE;
  }
  strcpy(dest + have, src);
  return 0;
}

int wcscpy_s(wchar_t* dest, size_t size, const wchar_t* src) {
  if (dest == NULL || src == NULL || size == 0) return EINVAL;
  if (wcslen(src) >= size) {
    dest[0] = L'\0';
    return ERANGE;
  }
  wcscpy(dest, src);
  return 0;
}

int wcscat_s(wchar_t* dest, size_t size, const wchar_t* src) {
  if (dest == NULL || src == NULL || size == 0) return EINVAL;
  size_t have = wcsnlen(dest, size);
  if (have == size || have + wcslen(src) >= size) {
    dest[0] = L'\0';
    return ERANGE;
  }
  wcscpy(dest + have, src);
  return 0;
}

int _vsnprintf_s(char* buffer, size_t sizeOfBuffer, size_t count, const char* format, va_list ap) {
  if (buffer == NULL || sizeOfBuffer == 0 || format == NULL) return -1;
  size_t size = count == _TRUNCATE || count + 1 > sizeOfBuffer ? sizeOfBuffer : count + 1;
  int n = vsnprintf(buffer, size, format, ap);
  return n < 0 || (size_t)n >= size ? -1 : n;
}

int _vsnwprintf_s(wchar_t* buffer, size_t sizeOfBuffer, size_t count, const wchar_t* format,
                  va_list ap) {
  if (buffer == NULL || sizeOfBuffer == 0 || format == NULL) return -1;
  size_t size = count == _TRUNCATE || count + 1 > sizeOfBuffer ? sizeOfBuffer : count + 1;
  int n = vformat_wide(buffer, size, format, ap);
  if (n < 0) buffer[size - 1] = L'\0';
  return n < 0 ? -1 : n;
}

/* The n-functions of Microsoft's C runtime: copy or append at most count characters (all of
 * src with _TRUNCATE, as much as fits); too long for dest: "" and ERANGE, or with _TRUNCATE
 * the part that fits and STRUNCATE. */
#define MQSEC_SHIM_NCOPY(name, T, len_fn)                                  \
  int name(T* dest, size_t size, const T* src, size_t count, int append) { \
    if (dest == NULL || size == 0) return EINVAL;                          \
    if (src == NULL) {                                                     \
      dest[0] = 0;                                                         \
      return EINVAL;                                                       \
    }                                                                      \
    size_t have = append ? len_fn(dest, size) : 0;                         \
    if (have == size) {                                                    \
      dest[0] = 0;                                                         \
      return EINVAL;                                                       \
    }                                                                      \
    size_t want = len_fn(src, count == _TRUNCATE ? (size_t)-1 : count);    \
    int result = 0;                                                        \
    if (have + want >= size) {                                             \
      if (count != _TRUNCATE) {                                            \
        dest[0] = 0;                                                       \
        return ERANGE;                                                     \
      }                                                                    \
      want = size - have - 1;                                              \
      result = STRUNCATE;                                                  \
    }                                                                      \
    memcpy(dest + have, src, want * sizeof(T));                            \
    dest[have + want] = 0;                                                 \
    return result;                                                         \
  }
MQSEC_SHIM_NCOPY(ncopy_narrow, char, strnlen)
MQSEC_SHIM_NCOPY(ncopy_wide, wchar_t, wcsnlen)

int strncpy_s(char* dest, size_t size, const char* src, size_t count) {
  return ncopy_narrow(dest, size, src, count, 0);
}

int strncat_s(char* dest, size_t size, const char* src, size_t count) {
  return ncopy_narrow(dest, size, src, count, 1);
}

int wcsncpy_s(wchar_t* dest, size_t size, const wchar_t* src, size_t count) {
  return ncopy_wide(dest, size, src, count, 0);
}

int wcsncat_s(wchar_t* dest, size_t size, const wchar_t* src, size_t count) {
  return ncopy_wide(dest, size, src, count, 1);
}

/* Converts at most count characters (all with _TRUNCATE) into dest, NUL-terminated;
 * *converted counts the characters written with the NUL. Too long: "" and ERANGE, or with
 * _TRUNCATE as much as fits and STRUNCATE. */
int mbstowcs_s(size_t* converted, wchar_t* dest, size_t size, const char* src, size_t count) {
  if (converted != NULL) *converted = 0;
  if (dest == NULL || size == 0 || src == NULL) return EINVAL;
  mbstate_t state;
  memset(&state, 0, sizeof state);
  size_t out = 0;
  int result = 0;
  while (count == _TRUNCATE || out < count) {
    if (out + 1 >= size) {
      if (count != _TRUNCATE && (count > out && *src != '\0')) {
        dest[0] = L'\0';
        return ERANGE;
      }
      if (*src != '\0') result = STRUNCATE;
      break;
    }
    wchar_t wc;
    size_t r = mbrtowc(&wc, src, MB_LEN_MAX, &state);
    if (r == (size_t)-1 || r == (size_t)-2) {
      dest[0] = L'\0';
      return EILSEQ;
    }
    if (r == 0) break;
    dest[out++] = wc;
    src += r;
  }
  dest[out] = L'\0';
  if (converted != NULL) *converted = out + 1;
  return result;
}

int wcstombs_s(size_t* converted, char* dest, size_t size, const wchar_t* src, size_t count) {
  if (converted != NULL) *converted = 0;
  if (dest == NULL || size == 0 || src == NULL) return EINVAL;
  mbstate_t state;
  memset(&state, 0, sizeof state);
  size_t out = 0;
  int result = 0;
  while (*src != L'\0' && (count == _TRUNCATE || out < count)) {
    char mb[MB_LEN_MAX];
    size_t r = wcrtomb(mb, *src, &state);
    if (r == (size_t)-1) {
      dest[0] = '\0';
      return EILSEQ;
    }
    if (out + r >= size) {
      if (count != _TRUNCATE) {
        dest[0] = '\0';
        return ERANGE;
      }
      result = STRUNCATE;
      break;
    }
    memcpy(dest + out, mb, r);
    out += r;
    src++;
  }
  dest[out] = '\0';
  if (converted != NULL) *converted = out + 1;
  return result;
}

/* Reads up to n - 1 characters or a newline as bytes and converts them, one multibyte
 * character at a time (so the stream stays byte-oriented, as in Microsoft's C runtime). */
wchar_t* mqsec_shim_fgetws(wchar_t* ws, int n, FILE* stream) {
  if (ws == NULL || n <= 0 || stream == NULL) return NULL;
  int i = 0;
  mbstate_t state;
  memset(&state, 0, sizeof state);
  while (i < n - 1) {
    int c = fgetc(stream);
    if (c == EOF) break;
    char byte = (char)c;
    wchar_t wc;
    size_t r = mbrtowc(&wc, &byte, 1, &state);
    if (r == (size_t)-2) continue; /* more bytes of this character */
    if (r == (size_t)-1) {
      memset(&state, 0, sizeof state);
      wc = (wchar_t)(unsigned char)byte;
    }
    ws[i++] = wc;
    if (wc == L'\n') break;
  }
  if (i == 0) return NULL;
  ws[i] = L'\0';
  return ws;
}
