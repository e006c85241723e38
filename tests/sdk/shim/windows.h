/*
 * windows.h: a small Win32 shim for compiling Microsoft's MSMQ SDK samples on Linux
 * (tests/sdk). It declares only the Win32 types, macros and functions those samples use, with
 * Windows' sizes on LP64 (DWORD and LONG are 32 bits), and defines no MSMQ name: everything of
 * MSMQ's C API comes from mqsec's mq.h. The types both headers need (DWORD, HANDLE, HRESULT,
 * GUID, ...) are declared here exactly as mq.h declares them (a repeated identical typedef is
 * valid C11 and C++), and GUID carries Windows' GUID_DEFINED guard, which mq.h honours.
 * Functions are in win32.c. Not a general Windows emulation: add what a new sample needs.
 */
#ifndef MQSEC_SDK_SHIM_WINDOWS_H
#define MQSEC_SDK_SHIM_WINDOWS_H

/* Windows' headers bring these in; samples call exit, strlen, tolower, wcslen without them. */
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- base types (as mq.h declares the ones it shares) ---------------------------------- */
typedef int32_t HRESULT;
typedef int32_t LONG;
typedef uint32_t ULONG;
typedef uint32_t DWORD;
typedef int16_t SHORT;
typedef uint16_t USHORT;
typedef uint16_t WORD;
typedef char CHAR;
typedef unsigned char UCHAR;
typedef unsigned char BYTE;
typedef int BOOL;
typedef int64_t LONGLONG;
typedef uint64_t ULONGLONG;
typedef void VOID;
typedef void* PVOID;
typedef void* LPVOID;
typedef void* HANDLE;
typedef HANDLE* PHANDLE;
typedef DWORD* LPDWORD;
typedef wchar_t WCHAR;
typedef WCHAR* LPWSTR;
typedef const WCHAR* LPCWSTR;
typedef CHAR* LPSTR;
typedef const CHAR* LPCSTR;
typedef int INT;
typedef unsigned int UINT;
typedef float FLOAT;
typedef BOOL* LPBOOL;
typedef BYTE* LPBYTE;
typedef const void* LPCVOID;
typedef uintptr_t UINT_PTR;
typedef intptr_t INT_PTR;
typedef uintptr_t ULONG_PTR;
typedef intptr_t LONG_PTR;
typedef ULONG_PTR DWORD_PTR;
typedef ULONG_PTR SIZE_T;

#ifndef GUID_DEFINED
#define GUID_DEFINED
typedef struct _GUID {
  uint32_t Data1;
  uint16_t Data2;
  uint16_t Data3;
  uint8_t Data4[8];
} GUID;
#endif
typedef GUID CLSID;
typedef GUID IID;
typedef GUID UUID;
typedef GUID* LPGUID;
typedef CLSID* LPCLSID;

#ifdef UNICODE
typedef WCHAR TCHAR;
#else
typedef CHAR TCHAR;
#endif
typedef TCHAR* LPTSTR;
typedef const TCHAR* LPCTSTR;

/* ---- macros ----------------------------------------------------------------------------- */
#define WINAPI
#define CALLBACK
#define FAR
#define NEAR
#ifndef APIENTRY
#define APIENTRY
#endif
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif
#ifndef INFINITE
#define INFINITE 0xFFFFFFFFu
#endif
/* Token for token as in mq.h, so that either header may come first. */
#define SUCCEEDED(hr) (((HRESULT)(hr)) >= 0)
#define FAILED(hr) (((HRESULT)(hr)) < 0)
/* winerror.h's, guarded: mqsec's transact.h has some of them too (same values). */
#ifndef S_OK
#define S_OK ((HRESULT)0)
#endif
#ifndef S_FALSE
#define S_FALSE ((HRESULT)1)
#endif
#ifndef NOERROR
#define NOERROR 0
#endif
#ifndef E_FAIL
#define E_FAIL ((HRESULT)0x80004005u)
#endif
#ifndef E_OUTOFMEMORY
#define E_OUTOFMEMORY ((HRESULT)0x8007000Eu)
#endif
#ifndef E_INVALIDARG
#define E_INVALIDARG ((HRESULT)0x80070057u)
#endif
#define INVALID_HANDLE_VALUE ((HANDLE)(LONG_PTR)-1)
#define MAX_PATH 260
#define MAX_COMPUTERNAME_LENGTH 15
#define ERROR_SUCCESS 0L
#define ERROR_INVALID_PARAMETER 87L
#define ERROR_INSUFFICIENT_BUFFER 122L
#define ERROR_BUFFER_OVERFLOW 111L
#define _TRUNCATE ((size_t)-1)
#define UNREFERENCED_PARAMETER(p) ((void)(p))
#define ZeroMemory(p, n) memset((p), 0, (n))

/* ---- kernel32 ----------------------------------------------------------------------------- */
DWORD WINAPI GetLastError(void);
void WINAPI SetLastError(DWORD dwErrCode);
void WINAPI Sleep(DWORD dwMilliseconds);
DWORD WINAPI GetCurrentThreadId(void);
DWORD WINAPI GetTickCount(void);
/* The computer name: $COMPUTERNAME when set (Windows sets it in every process), else the host
 * name up to its first dot. Fails with ERROR_BUFFER_OVERFLOW (and the length needed) when it
 * does not fit *nSize characters, as on Windows. */
BOOL WINAPI GetComputerNameA(LPSTR lpBuffer, LPDWORD nSize);
BOOL WINAPI GetComputerNameW(LPWSTR lpBuffer, LPDWORD nSize);
#ifdef UNICODE
#define GetComputerName GetComputerNameW
#else
#define GetComputerName GetComputerNameA
#endif

/* ---- the Microsoft C runtime ------------------------------------------------------------ */
int _stricmp(const char* a, const char* b);
int _strnicmp(const char* a, const char* b, size_t n);
int _wcsicmp(const wchar_t* a, const wchar_t* b);
/* Microsoft's wide printf family reads %s and %c as wide and %S and %C as narrow (the reverse
 * of ISO C's), and takes l on an integer as 32 bits. These translate the format first. */
int _snwprintf_s(wchar_t* buffer, size_t sizeOfBuffer, size_t count, const wchar_t* format, ...);
int _snwprintf(wchar_t* buffer, size_t count, const wchar_t* format, ...);
int swprintf_s(wchar_t* buffer, size_t sizeOfBuffer, const wchar_t* format, ...);
int mqsec_shim_wprintf(const wchar_t* format, ...);
int mqsec_shim_fwprintf(FILE* stream, const wchar_t* format, ...);
int sprintf_s(char* buffer, size_t sizeOfBuffer, const char* format, ...);
int _snprintf_s(char* buffer, size_t sizeOfBuffer, size_t count, const char* format, ...);
int strcpy_s(char* dest, size_t size, const char* src);
int strcat_s(char* dest, size_t size, const char* src);
int wcscpy_s(wchar_t* dest, size_t size, const wchar_t* src);
int wcscat_s(wchar_t* dest, size_t size, const wchar_t* src);
/* count may be _TRUNCATE: as much as fits, and STRUNCATE. */
int strncpy_s(char* dest, size_t size, const char* src, size_t count);
int strncat_s(char* dest, size_t size, const char* src, size_t count);
int wcsncpy_s(wchar_t* dest, size_t size, const wchar_t* src, size_t count);
int wcsncat_s(wchar_t* dest, size_t size, const wchar_t* src, size_t count);
int mbstowcs_s(size_t* converted, wchar_t* dest, size_t size, const char* src, size_t count);
int wcstombs_s(size_t* converted, char* dest, size_t size, const wchar_t* src, size_t count);
int _vsnprintf_s(char* buffer, size_t sizeOfBuffer, size_t count, const char* format, va_list ap);
int _vsnwprintf_s(wchar_t* buffer, size_t sizeOfBuffer, size_t count, const wchar_t* format,
                  va_list ap);
#define STRUNCATE 80
/* Microsoft's scanf_s and sscanf_s, for numeric conversions (l on an integer is 32 bits there).
 * A format with %s, %c or %[, which take an extra size argument in Microsoft's versions, is not
 * supported: they return EOF without reading anything. */
int scanf_s(const char* format, ...);
int sscanf_s(const char* buffer, const char* format, ...);
/* glibc defines these two as macros under _FORTIFY_SOURCE (Debian's hardening flags). */
#undef wprintf
#undef fwprintf
#define wprintf mqsec_shim_wprintf
#define fwprintf mqsec_shim_fwprintf
/* Microsoft's C runtime gives streams no orientation: a program may read one stream with
 * fgets and fgetws in turn (MSMQTest does). glibc's fgetws would make stdin wide-oriented and
 * every later fgets return NULL, so this one reads bytes and converts them. */
wchar_t* mqsec_shim_fgetws(wchar_t* ws, int n, FILE* stream);
#define fgetws mqsec_shim_fgetws

#ifdef __cplusplus
}
#endif

#endif /* MQSEC_SDK_SHIM_WINDOWS_H */
