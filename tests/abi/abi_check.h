/*
 * The abi tests' checks (plain C, included by one .c file each): CHECK(cond) and
 * CHECK_HR(expr, expected) count into `passed` / `failed` and print the failed ones with file
 * and line; the test prints "N passed, N failed" at the end and exits non-zero on a failure.
 * Include after <mq.h> (HRESULT) and <stdio.h>.
 */
#ifndef MQSEC_TESTS_ABI_CHECK_H
#define MQSEC_TESTS_ABI_CHECK_H

static int passed, failed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      ++passed;                                                                \
    } else {                                                                   \
      ++failed;                                                                \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECK_HR(expr, expected)                                                               \
  do {                                                                                         \
    HRESULT hr_ = (expr);                                                                      \
    if (hr_ == (HRESULT)(expected)) {                                                          \
      ++passed;                                                                                \
    } else {                                                                                   \
      ++failed;                                                                                \
      fprintf(stderr, "%s:%d: %s returned 0x%08X, expected %s (0x%08X)\n", __FILE__, __LINE__, \
              #expr, (unsigned)hr_, #expected, (unsigned)(HRESULT)(expected));                 \
    }                                                                                          \
  } while (0)

#endif
