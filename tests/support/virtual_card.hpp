// Test support: the virtual smartcard test bed (tests/card/card_bed.py) for tests that go
// through the real smartcard stack: OpenSC's opensc-pkcs11.so -> pcscd -> vsmartcard's vpcd
// reader driver -> our PIV card emulator (tests/card/piv_card.py).
//
// VirtualCardBed::start() runs one bed per test process: a private pcscd in its own mount,
// network and PID namespaces (unshare), with two vpcd readers and two PIV cards, "A" and "B",
// each holding an RSA-2048 key in slot 9A and a P-256 key in 9C (PIN-always) with certificates
// issued by the CA it is given. The test process reaches that pcscd through
// PCSCLITE_CSOCK_NAME and reads the bed's OpenSC configuration (file cache off) through
// OPENSC_CONF; start() sets both, so call it before anything loads OpenSC.
//
// Isolation: as root the bed runs as an unprivileged user (MQSEC_CARD_RUN_AS, default
// "nobody") in a user namespace, else (no user namespaces) as root in the namespaces; as
// another user, in a user namespace of that user. It listens on nothing outside its network
// namespace (vpcd's ports exist only there) and mounts nothing outside its mount namespace.
// It stops when stop() or the destructor closes its stdin, and when the test process dies for
// whatever reason (the pipe closes), taking pcscd with it (the PID namespace ends).
//
// The PIN, PUK and tries are those of a fresh PIV card: kPin, kPuk, kPinTries. They are known
// test values; tests write them into 0600 PIN files, never onto a command line.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mqsec::testing {

class VirtualCardBed {
 public:
  static constexpr const char* kPin = "123456";
  static constexpr const char* kPuk = "12345678";
  static constexpr int kPinTries = 3;
  static constexpr int kReaders = 2;
  static constexpr uint8_t kSlotRsa = 0x9A;        // RSA-2048, PIN once per login (CKA_ID 01)
  static constexpr uint8_t kSlotPinAlways = 0x9C;  // P-256, PIN-always (CKA_ID 02)

  struct Options {
    std::string python;      // empty: /usr/bin/python3
    std::string bed_script;  // tests/card/card_bed.py (piv_card.py must sit next to it)
    std::filesystem::path ca_cert, ca_key;  // PEM; they issue the cards' certificates
    std::string sid;                        // the SID written into the certificates' SID extension
    std::vector<std::pair<std::string, int>> inserted;  // cards inserted at start (card, reader)
  };

  // Why the bed cannot run on this machine at all (pcscd is not installed, or no namespaces can
  // be made), or "" when it can be tried. Tests skip with this message, and only then.
  static std::string unavailable_reason();

  // Starts the bed and waits until it is ready (the cards in `inserted` seen by pcscd). Throws
  // std::runtime_error with the bed's output when it fails.
  explicit VirtualCardBed(const Options& options);
  ~VirtualCardBed();  // stop()
  VirtualCardBed(const VirtualCardBed&) = delete;
  VirtualCardBed& operator=(const VirtualCardBed&) = delete;

  // Ends the bed (closes its stdin, waits, kills what is left) and removes its directory.
  void stop() noexcept;

  // The OpenSC PKCS#11 module the tests load (Debian's path).
  static std::string module_path();
  const std::filesystem::path& dir() const noexcept { return dir_; }
  // How the bed was started ("unprivileged user namespace as nobody", ...), for the log.
  const std::string& mode() const noexcept { return mode_; }

  // The PKCS#11 token serial of a card (CK_TOKEN_INFO serialNumber, 16 hex digits).
  std::string serial(const std::string& card) const;
  // The DER certificate of a card's slot (kSlotRsa or kSlotPinAlways).
  std::vector<uint8_t> certificate(const std::string& card, uint8_t slot) const;
  // CKA_ID of a slot's key and certificate as OpenSC shows them: 9A -> "01", 9C -> "02".
  static std::string key_id_hex(uint8_t slot);
  // pkcs11:serial=<serial>?module-path=<module>&pin-source=file:<pin_file>
  std::string token_uri(const std::string& card, const std::filesystem::path& pin_file) const;
  // pkcs11:serial=<serial>;id=%0N;type=cert
  std::string certificate_uri(const std::string& card, uint8_t slot) const;

  // The control interface (tests/card/card_bed.py). Each throws std::runtime_error with the
  // bed's answer when it refuses (a card already inserted, a reader taken, ...).
  // insert returns once pcscd has powered the card on.
  void insert(const std::string& card, int reader);
  // Returns once the card is out. By default it leaves when pcscd next polls the reader (within
  // 0.4 s), so pcscd knows it is gone from the moment APDUs fail, as with a real reader.
  // `abrupt`: at once, so APDUs fail while pcscd still shows the card until its next poll.
  void remove(const std::string& card, bool abrupt = false);
  // The reader a card is in, or nullopt when it is out.
  std::optional<int> reader_of(const std::string& card);
  // Each signature of the card takes `ms` longer (0: as fast as it can).
  void set_signature_delay(const std::string& card, int ms);
  int pin_tries(const std::string& card);
  void set_pin_tries(const std::string& card, int tries);
  // PIN, PUK, tries, delay and counters back to a fresh card's, and the PIN verification
  // forgotten as after a card reset (the keys stay; so does where the card is).
  void reset(const std::string& card);
  // The card's counters: verify_ok, verify_bad, verify_blocked, sign, sign_refused, apdus,
  // resets.
  std::map<std::string, long> stats(const std::string& card);
  // One raw request line; returns the answer after "ok " (throws on "err ...").
  std::string request(const std::string& line);

 private:
  bool try_start(const Options& o, const std::vector<std::string>& prefix, std::string& why);
  std::filesystem::path dir_;
  std::string mode_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;  // the watchdog pipe: the bed ends at EOF
  std::map<std::string, std::string> serials_;
};

}  // namespace mqsec::testing
