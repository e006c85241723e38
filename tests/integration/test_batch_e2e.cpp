// Batch signatures end to end (issue 12, items 1 and 2) on a throwaway SoftHSM token: messages
// batch-signed with one C_Sign through a security context (security::sign_batch), stored in a
// local queue and received through the core's verify loop, delivered through the arrival path of
// remote messages, and exported by `mqsec receive --export`; the export is then checked without
// mqsec: `openssl dgst -verify` over statement.bin and scripts/verify-batch-proof.py for the
// proof (docs/signature-format.md, section 10.9), and the envelope extractor printed in section 9
// of that document on the stored bytes. A tampered or re-pointed batch message is rejected (kind
// "signature") on receive and on arrival.
#include <gtest/gtest.h>
#include <mq.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mqsec/error.hpp"
#include "src/core/admin.hpp"
#include "src/core/arrival.hpp"
#include "src/core/destination.hpp"
#include "src/core/queue.hpp"
#include "src/core/runtime.hpp"
#include "src/core/text.hpp"
#include "src/security/config.hpp"
#include "src/security/context.hpp"
#include "src/security/envelope.hpp"
#include "src/security/message_auth.hpp"
#include "src/security/openssl.hpp"
#include "tests/support/softhsm_env.hpp"
#include "tests/support/verified_receive.hpp"
#include "tests/support/softhsm_test_environment.hpp"

#ifndef MQSEC_CLI
#error "MQSEC_CLI must name the mqsec command"
#endif
#ifndef MQSEC_SOURCE_DIR
#error "MQSEC_SOURCE_DIR must name the source tree"
#endif

namespace mqsec::core {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using mqsec::testing::receive_all;
using mqsec::testing::run_command;
using mqsec::testing::shell_quote;
using mqsec::testing::SoftHsmEnv;
using security::Envelope;

[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new mqsec::testing::SoftHsmTestEnvironment);

const fs::path kSource = MQSEC_SOURCE_DIR;

class BatchE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cfg_ = new security::SystemConfig(security::load_system_config());
    work_ = SoftHsmEnv::instance().dir() / "batch-e2e";
    fs::create_directories(work_);
  }

  // A context on a new key of the primary token ("EC:prime256v1", "rsa:2048") with a
  // self-signed certificate made for it.
  static std::shared_ptr<security::SecurityContext> context(const std::string& key_type) {
    SoftHsmEnv& env = SoftHsmEnv::instance();
    const std::string id = SoftHsmEnv::new_id();
    env.keypairgen(SoftHsmEnv::kPrimaryToken, key_type, id, "batch-key-" + id);
    const security::Bytes der =
        env.certificate_for_token_key(SoftHsmEnv::kPrimaryToken, id, "batch sender " + id);
    return security::acquire_context(der);
  }

  static std::string new_queue(const std::string& tag) {
    static int n = 0;
    transport::QueueInfo info;
    info.name = "batch-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(++n);
    info.authenticate = true;
    create_queue(cfg_->store_path, info);
    return info.name;
  }

  // n messages for `queue` on this machine, as Queue::send fills them, prepared for ctx.
  static std::vector<Envelope> prepared(const security::SecurityContext& ctx,
                                        const std::string& queue, size_t n) {
    std::vector<Envelope> out;
    for (size_t i = 0; i < n; ++i) {
      Envelope e;
      e.msg_id = runtime().new_message_id();
      const std::string body = "batch message " + std::to_string(i);
      e.body.assign(body.begin(), body.end());
      e.label = u"batch";
      e.priority = 3;
      e.delivery = MQMSG_DELIVERY_RECOVERABLE;
      e.sent_time = static_cast<uint64_t>(std::time(nullptr));
      e.source_machine = utf8_to_utf16(local_host());  // `receive --export` assumes it
      e.dest_queue = utf8_to_utf16(format_name_of(Destination{queue, {}, {}}));
      e.auth_level = MQMSG_AUTH_LEVEL_ALWAYS;
      if (i == 1) e.time_to_reach_queue = 3600;
      security::prepare_envelope(e, ctx, CALG_SHA_256, false, /*attach_sid=*/true);
      out.push_back(std::move(e));
    }
    return out;
  }

  static void sign(std::vector<Envelope>& batch, const security::SecurityContext& ctx) {
    std::vector<Envelope*> p;
    for (Envelope& e : batch) p.push_back(&e);
    security::sign_batch(p, ctx, false);
  }

  // Into the queue as a sender's store write puts them (the signing pipeline's job later).
  static void store(const std::string& queue, const std::vector<Envelope>& batch) {
    auto resolved = runtime().resolve(Destination{queue, {}, {}}, cfg_->store_path);
    ASSERT_TRUE(resolved);
    for (const Envelope& e : batch) {
      resolved->transport->send(e.priority, security::encode(e), transport::Delivery::Recoverable);
    }
    resolved->transport->flush();
  }

  static std::string read_text(const fs::path& p) { return mqsec::testing::read_text(p); }

  static inline security::SystemConfig* cfg_ = nullptr;
  static inline fs::path work_;
};

// The extractor of docs/signature-format.md, section 9, as printed there.
fs::path extractor() {
  const std::string doc = mqsec::testing::read_text(kSource / "docs" / "signature-format.md");
  const size_t section = doc.find("## 9. Reference extractor");
  const size_t begin = doc.find("```python\n", section);
  const size_t end = doc.find("```", begin + 10);
  EXPECT_NE(section, std::string::npos);
  EXPECT_NE(begin, std::string::npos);
  const fs::path out = SoftHsmEnv::instance().dir() / "batch-e2e" / "extract.py";
  mqsec::testing::write_file(out, doc.substr(begin + 10, end - begin - 10));
  return out;
}

std::string openssl_verify(const fs::path& dir, const std::string& data_file,
                           security::SigScheme scheme) {
  const std::string pss = scheme == security::SigScheme::RsaPss
                              ? " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"
                              : "";
  const std::string cert = fs::exists(dir / "sender.der") ? "sender.der" : "cert.der";
  return run_command("cd " + shell_quote(dir.string()) + " && openssl x509 -inform DER -in " +
                     cert + " -pubkey -noout > pub.pem && openssl dgst -sha256" + pss +
                     " -verify pub.pem -signature signature.bin " + data_file + " 2>&1")
      .output;
}

mqsec::testing::CommandResult proof_script(const fs::path& dir) {
  return run_command("python3 " +
                     shell_quote((kSource / "scripts" / "verify-batch-proof.py").string()) + " " +
                     shell_quote(dir.string()) + " 2>&1");
}

TEST_F(BatchE2E, ExportedMessageVerifiesWithOpensslAndTheProofScript) {
  ASSERT_TRUE(run_command("openssl version").ok()) << "openssl is needed";
  for (const std::string key_type : {"EC:prime256v1", "rsa:2048"}) {
    SCOPED_TRACE(key_type);
    auto ctx = context(key_type);
    const std::string queue = new_queue("export");
    std::vector<Envelope> batch = prepared(*ctx, queue, 5);
    sign(batch, *ctx);
    ASSERT_TRUE(batch[0].batch.present());
    const security::SigScheme scheme = batch[0].sig_scheme;
    store(queue, batch);

    // `mqsec receive --export`: each message verified on receive, then written out.
    const fs::path out = work_ / ("export-" + queue);
    auto r = run_command(std::string(MQSEC_CLI) + " receive " + queue +
                         " --count 5 --json --export " + shell_quote(out.string()) + " 2>&1");
    ASSERT_TRUE(r.ok()) << r.output;
    std::istringstream lines(r.output);
    std::string line;
    int authenticated = 0;
    while (std::getline(lines, line)) {
      if (line.find("\"trust\":[\"signature\"") != std::string::npos) ++authenticated;
    }
    EXPECT_EQ(authenticated, 5) << r.output;

    for (size_t n = 1; n <= 5; ++n) {
      const fs::path dir = out / std::to_string(n);
      SCOPED_TRACE(dir.string());
      for (const char* f :
           {"tbs.bin", "signature.bin", "sender.der", "hash", "statement.bin", "proof.bin"}) {
        EXPECT_TRUE(fs::exists(dir / f)) << f;
      }
      EXPECT_EQ(read_text(dir / "hash"), "sha256\n");
      EXPECT_NE(openssl_verify(dir, "statement.bin", scheme).find("Verified OK"),
                std::string::npos);
      // The signature is over the statement, not over the message's TBS.
      EXPECT_EQ(openssl_verify(dir, "tbs.bin", scheme).find("Verified OK"), std::string::npos);
      auto proof = proof_script(dir);
      EXPECT_TRUE(proof.ok()) << proof.output;
      EXPECT_NE(proof.output.find("proof OK: leaf " + std::to_string(n - 1) + " of 5"),
                std::string::npos)
          << proof.output;
    }

    // What must fail: an altered TBS, the proof of another message, an altered statement.
    const fs::path bad = out / "bad";
    fs::create_directories(bad);
    for (const char* f : {"tbs.bin", "statement.bin", "proof.bin", "signature.bin", "sender.der"}) {
      fs::copy_file(out / "3" / f, bad / f, fs::copy_options::overwrite_existing);
    }
    auto flip = [&](const char* f, size_t at) {
      std::fstream s(bad / f, std::ios::in | std::ios::out | std::ios::binary);
      s.seekg(static_cast<std::streamoff>(at));
      char c = 0;
      s.get(c);
      s.seekp(static_cast<std::streamoff>(at));
      s.put(static_cast<char>(c ^ 1));
    };
    // TBS: domain tag (13), correlation id (4 + 20), app-specific (4 + 4), body length (4),
    // then the body: byte 50 is in the body.
    flip("tbs.bin", 50);
    auto altered = proof_script(bad);
    EXPECT_EQ(altered.status, 1) << altered.output;
    EXPECT_NE(altered.output.find("does not lead to the statement's root"), std::string::npos)
        << altered.output;
    flip("tbs.bin", 50);
    ASSERT_TRUE(proof_script(bad).ok());
    fs::copy_file(out / "4" / "proof.bin", bad / "proof.bin", fs::copy_options::overwrite_existing);
    EXPECT_EQ(proof_script(bad).status, 1) << "the proof of message 4 for message 3";
    fs::copy_file(out / "3" / "proof.bin", bad / "proof.bin", fs::copy_options::overwrite_existing);
    flip("statement.bin", 30);
    EXPECT_EQ(openssl_verify(bad, "statement.bin", scheme).find("Verified OK"), std::string::npos);
    EXPECT_EQ(proof_script(bad).status, 1) << "an altered root";
  }
}

// The extractor printed in docs/signature-format.md, section 9, splits a stored version 3
// envelope into the same files, and they check out the same way.
TEST_F(BatchE2E, DocumentedExtractorSplitsAStoredBatchMessage) {
  auto ctx = context("EC:prime256v1");
  const std::string queue = new_queue("extract");
  std::vector<Envelope> batch = prepared(*ctx, queue, 3);
  sign(batch, *ctx);
  const fs::path script = extractor();
  for (size_t i = 0; i < batch.size(); ++i) {
    const fs::path dir = work_ / ("extract-" + std::to_string(i));
    fs::create_directories(dir);
    const security::Bytes bytes = security::encode(batch[i]);
    mqsec::testing::write_file(dir / "envelope.bin", std::string(bytes.begin(), bytes.end()));
    auto r = run_command("python3 " + shell_quote(script.string()) + " " +
                         shell_quote((dir / "envelope.bin").string()) + " 2>&1");
    ASSERT_TRUE(r.ok()) << r.output;
    EXPECT_NE(r.output.find("batch-signed"), std::string::npos) << r.output;
    const security::Bytes tbs = security::to_be_signed(batch[i]);
    EXPECT_EQ(read_text(dir / "tbs.bin"), std::string(tbs.begin(), tbs.end()));
    EXPECT_NE(openssl_verify(dir, "statement.bin", batch[i].sig_scheme).find("Verified OK"),
              std::string::npos);
    auto proof = proof_script(dir);
    EXPECT_TRUE(proof.ok()) << proof.output;
  }
}

// The receive path (core/verification.cpp, the same Verifier) delivers batch-signed messages
// and rejects altered ones as "signature", recorded, as it does single signatures.
TEST_F(BatchE2E, ReceivePathDeliversBatchMessagesAndRejectsAlteredOnes) {
  auto ctx = context("EC:prime256v1");
  const std::string queue = new_queue("receive");
  std::vector<Envelope> batch = prepared(*ctx, queue, 4);
  sign(batch, *ctx);
  std::vector<Envelope> stored = batch;
  stored[1].body.push_back('!');     // altered after signing
  stored[2].batch = batch[3].batch;  // another message's proof
  stored[3].batch.root[0] ^= 1;      // an altered statement
  store(queue, stored);
  const std::vector<Envelope> got = receive_all(queue);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], batch[0]);
  const auto rejected = rejections(cfg_->store_path, queue);
  ASSERT_EQ(rejected.size(), 3u);
  for (const auto& r : rejected) EXPECT_EQ(r.kind, "signature") << r.reason;
}

// The arrival path of remote messages (core::Arrivals, `mqsec agent`) checks them with the same
// code: a good batch message is stored, one with a moved proof rejected.
TEST_F(BatchE2E, ArrivalPathAcceptsBatchMessagesAndRejectsMovedProofs) {
  auto ctx = context("EC:prime256v1");
  const std::string queue = new_queue("arrive");
  std::vector<Envelope> batch = prepared(*ctx, queue, 3);
  sign(batch, *ctx);
  Envelope moved = batch[2];
  moved.batch = batch[0].batch;
  Arrivals arrivals(*cfg_);
  auto inbound = [&](const Envelope& e) {
    transport::amqp::InboundMessage m;
    m.queue = "private$\\" + queue;
    m.message_id_hex = security::hex(e.msg_id);
    m.source_machine = local_host();
    m.body = security::encode(e);
    return m;
  };
  EXPECT_EQ(arrivals.deliver(inbound(batch[0])), transport::amqp::Disposition::accept);
  EXPECT_EQ(arrivals.deliver(inbound(batch[1])), transport::amqp::Disposition::accept);
  EXPECT_EQ(arrivals.deliver(inbound(moved)), transport::amqp::Disposition::reject);
  EXPECT_EQ(arrivals.counts().stored, 2u);
  const auto rejected = rejections(cfg_->store_path, queue);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].kind, "signature");
  EXPECT_EQ(receive_all(queue).size(), 2u);
}

}  // namespace
}  // namespace mqsec::core
