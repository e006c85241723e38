# Turns msmq_values.tsv (MSMQ's documented values) into a C program that compares each with
# what our mq.h defines: cmake -DTABLE=msmq_values.tsv -DOUT=mq_values.c -P gen_mq_values.cmake
file(STRINGS ${TABLE} lines)
set(ints "")
set(wstrs "")
set(guids "")
foreach(line IN LISTS lines)
  if(line MATCHES "^#" OR line STREQUAL "")
    continue()
  endif()
  string(REPLACE "\t" ";" f "${line}")
  list(GET f 0 name)
  list(GET f 1 kind)
  list(GET f 2 value)
  if(kind STREQUAL "int")
    string(APPEND ints "  {\"${name}\", (long long)(${name}), ${value}LL},\n")
  elseif(kind STREQUAL "hr")
    string(APPEND ints "  {\"${name}\", (long long)(uint32_t)(${name}), ${value}LL},\n")
  elseif(kind STREQUAL "wstr")
    string(APPEND wstrs "  {\"${name}\", ${name}, L\"${value}\"},\n")
  elseif(kind STREQUAL "guid")
    string(APPEND guids "  {\"${name}\", ${name}, \"${value}\"},\n")
  else()
    message(FATAL_ERROR "msmq_values.tsv: unknown kind '${kind}' for ${name}")
  endif()
endforeach()
file(WRITE ${OUT}.tmp "/* Generated from tests/abi/msmq_values.tsv by gen_mq_values.cmake. */
#include <mq.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>
struct int_value { const char* name; long long ours; long long msmq; };
struct wstr_value { const char* name; const wchar_t* ours; const wchar_t* msmq; };
struct guid_value { const char* name; GUID ours; const char* msmq; };
static const struct int_value ints[] = {
${ints}};
static const struct wstr_value wstrs[] = {
${wstrs}};
static const struct guid_value guids[] = {
${guids}};
int main(void) {
  int bad = 0;
  size_t i;
  for (i = 0; i < sizeof ints / sizeof ints[0]; ++i) {
    /* An int-typed value MSMQ gives as negative may be a 32-bit unsigned one in our header. */
    long long ours = ints[i].ours, msmq = ints[i].msmq;
    if (ours != msmq && (uint32_t)ours != (uint32_t)msmq) {
      printf(\"%s: ours %lld (0x%llx), MSMQ's %lld (0x%llx)\\n\", ints[i].name, ours,
             (unsigned long long)ours, msmq, (unsigned long long)msmq);
      ++bad;
    }
  }
  for (i = 0; i < sizeof wstrs / sizeof wstrs[0]; ++i) {
    if (wcscmp(wstrs[i].ours, wstrs[i].msmq) != 0) {
      printf(\"%s: ours %ls, MSMQ's %ls\\n\", wstrs[i].name, wstrs[i].ours, wstrs[i].msmq);
      ++bad;
    }
  }
  for (i = 0; i < sizeof guids / sizeof guids[0]; ++i) {
    const GUID* g = &guids[i].ours;
    char text[40];
    snprintf(text, sizeof text, \"%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x\", (unsigned)g->Data1,
             g->Data2, g->Data3, g->Data4[0], g->Data4[1], g->Data4[2], g->Data4[3], g->Data4[4],
             g->Data4[5], g->Data4[6], g->Data4[7]);
    if (strcmp(text, guids[i].msmq) != 0) {
      printf(\"%s: ours %s, MSMQ's %s\\n\", guids[i].name, text, guids[i].msmq);
      ++bad;
    }
  }
  printf(\"%d of %zu values differ from MSMQ's\\n\", bad,
         sizeof ints / sizeof ints[0] + sizeof wstrs / sizeof wstrs[0] + sizeof guids / sizeof guids[0]);
  return bad == 0 ? 0 : 1;
}
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
