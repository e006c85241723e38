// Replay driver for the fuzz targets without libFuzzer (the idea of p11-kit's fuzz/main.c):
// main() runs LLVMFuzzerTestOneInput once over every regular file of the directories (or
// files) named on the command line, so each seed corpus and every saved crash input runs as
// an ordinary test with g++ and, in the sanitizer builds, under ASan/UBSan. A target that
// crashes, aborts or throws fails the test; the file being replayed is printed first so that
// a failure names its input.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

bool read_all(const fs::path& path, std::vector<uint8_t>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <corpus dir or file>...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    std::error_code ec;
    fs::path arg(argv[i]);
    if (fs::is_directory(arg, ec)) {
      for (const auto& entry : fs::directory_iterator(arg, ec)) {
        if (entry.is_regular_file()) inputs.push_back(entry.path());
      }
    } else if (fs::is_regular_file(arg, ec)) {
      inputs.push_back(arg);
    }
    if (ec) {
      std::fprintf(stderr, "%s: %s\n", argv[i], ec.message().c_str());
      return 2;
    }
  }
  // A corpus that silently replays nothing (wrong path, empty directory) must not pass.
  if (inputs.empty()) {
    std::fprintf(stderr, "no input files found\n");
    return 2;
  }
  std::sort(inputs.begin(), inputs.end());  // a stable order makes failures reproducible
  std::vector<uint8_t> data;
  for (const fs::path& path : inputs) {
    std::fprintf(stderr, "replaying %s\n", path.c_str());
    if (!read_all(path, data)) {
      std::fprintf(stderr, "%s: cannot read\n", path.c_str());
      return 2;
    }
    // An escaping exception reaches std::terminate, which aborts: a failure, as in libFuzzer.
    LLVMFuzzerTestOneInput(data.data(), data.size());
  }
  std::fprintf(stderr, "replayed %zu inputs\n", inputs.size());
  return 0;
}
