// mqsec-init-token: initialises a token (C_InitToken + C_InitPIN) for tests and the demo,
// reading the PINs from files so they never appear in argv (softhsm2-util and pkcs11-tool
// only take them on the command line).
//
//   mqsec-init-token --module LIB --label LABEL --pin-file F --so-pin-file F
// Uses the first slot without an initialised token (SoftHSM always offers one).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "pkcs11/cryptoki.hpp"
#include "pkcs11/error.hpp"
#include "pkcs11/module.hpp"
#include "pkcs11/pin.hpp"
#include "pkcs11/token.hpp"

using namespace mqsec::pkcs11;

int main(int argc, char** argv) {
  std::string module, label, pin_file, so_pin_file;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--module")
      module = v;
    else if (k == "--label")
      label = v;
    else if (k == "--pin-file")
      pin_file = v;
    else if (k == "--so-pin-file")
      so_pin_file = v;
  }
  if (module.empty() || label.empty() || pin_file.empty() || so_pin_file.empty() ||
      label.size() > 32) {
    std::fprintf(stderr,
                 "usage: mqsec-init-token --module LIB --label LABEL(<=32) --pin-file F "
                 "--so-pin-file F\n");
    return 2;
  }
  try {
    auto m = Module::load(module);
    CK_FUNCTION_LIST* f = m->fn();
    CK_ULONG n = 0;
    check(f->C_GetSlotList(CK_TRUE, nullptr, &n), "C_GetSlotList");
    std::vector<CK_SLOT_ID> slots(n);
    check(f->C_GetSlotList(CK_TRUE, slots.data(), &n), "C_GetSlotList");
    for (CK_SLOT_ID s : slots) {
      CK_TOKEN_INFO ti{};
      if (f->C_GetTokenInfo(s, &ti) != CKR_OK || (ti.flags & CKF_TOKEN_INITIALIZED)) continue;
      SecretString so = read_pin("file:" + so_pin_file), pin = read_pin("file:" + pin_file);
      CK_UTF8CHAR padded[32];
      std::memset(padded, ' ', sizeof padded);
      std::memcpy(padded, label.data(), label.size());
      auto bytes = [](const SecretString& p) {
        return reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(p.str().data()));
      };
      check(f->C_InitToken(s, bytes(so), so.str().size(), padded), "C_InitToken");
      // SoftHSM moves the new token to another slot: find it again by label.
      check(f->C_GetSlotList(CK_TRUE, nullptr, &n), "C_GetSlotList");
      slots.resize(n);
      check(f->C_GetSlotList(CK_TRUE, slots.data(), &n), "C_GetSlotList");
      for (CK_SLOT_ID t : slots) {
        if (f->C_GetTokenInfo(t, &ti) != CKR_OK) continue;
        if (padded_string(ti.label, sizeof ti.label) != label ||
            (ti.flags & CKF_USER_PIN_INITIALIZED))
          continue;
        CK_SESSION_HANDLE h;
        check(f->C_OpenSession(t, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h),
              "C_OpenSession");
        check(f->C_Login(h, CKU_SO, bytes(so), so.str().size()), "C_Login");
        check(f->C_InitPIN(h, bytes(pin), pin.str().size()), "C_InitPIN");
        f->C_Logout(h);
        f->C_CloseSession(h);
        std::printf("initialised token '%s'\n", label.c_str());
        return 0;
      }
      std::fprintf(stderr, "mqsec-init-token: the new token '%s' did not appear\n", label.c_str());
      return 1;
    }
    std::fprintf(stderr, "mqsec-init-token: no free slot (all tokens are initialised)\n");
    return 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "mqsec-init-token: %s\n", e.what());
    return 1;
  }
}
