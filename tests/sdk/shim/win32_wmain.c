/*
 * win32_wmain.c: main for samples written with _tmain and _UNICODE (wmain), linked only into
 * those: converts the arguments from the locale's multibyte encoding and calls wmain.
 */
#include <locale.h>
#include <stdlib.h>
#include <wchar.h>

int wmain(int argc, wchar_t* argv[]);

int main(int argc, char* argv[]) {
  setlocale(LC_CTYPE, "");
  wchar_t** wargv = calloc((size_t)argc + 1, sizeof *wargv);
  if (wargv == NULL) return 1;
  for (int i = 0; i < argc; i++) {
    size_t len = mbstowcs(NULL, argv[i], 0);
    if (len == (size_t)-1) return 1;
    wargv[i] = calloc(len + 1, sizeof(wchar_t));
    if (wargv[i] == NULL) return 1;
    mbstowcs(wargv[i], argv[i], len + 1);
  }
  return wmain(argc, wargv);
}
