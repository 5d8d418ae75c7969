// Config loading (config::load) on arbitrary bytes, written as the main file
// of a private temp directory. Never throws, reports an error whenever it
// returns no config, and renders its diagnostics (caret lines included).
//
// Inputs that could make the loader read a file outside that directory are
// skipped: the keys that name files to read must hold relative paths without
// "..". Includes and secret files (include, *password_file, token_file,
// tokens_file) resolve against the config file's directory, the temp
// directory, where the only file is the input itself; tls_*_file, which the
// probes take as written, must be bare file names (at most a file in the
// working directory). Everything else, including absolute paths that are
// only stat()ed (exec commands), stays allowed.
#include <toml++/toml.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "daemon/config.hpp"
#include "fuzz_check.hpp"

namespace {

std::string g_path;

constexpr std::string_view kConfigRelativeKeys[] = {
    "include", "password_file", "basic_auth_password_file", "token_file", "tokens_file"};
constexpr std::string_view kWorkingDirKeys[] = {"tls_ca_file", "tls_cert_file", "tls_key_file"};

bool inside(const toml::node& value, bool bare) {
  if (const auto* s = value.as_string()) {
    const std::string& path = s->get();
    return !path.starts_with('/') && path.find("..") == std::string::npos &&
           (!bare || path.find('/') == std::string::npos);
  }
  if (const auto* a = value.as_array()) {
    for (const auto& v : *a)
      if (!inside(v, bare)) return false;
  }
  return true;  // not a string: the loader reports the type
}

bool safe(const toml::node& node) {
  if (const auto* t = node.as_table()) {
    for (const auto& [key, value] : *t) {
      for (std::string_view k : kConfigRelativeKeys)
        if (key.str() == k && !inside(value, false)) return false;
      for (std::string_view k : kWorkingDirKeys)
        if (key.str() == k && !inside(value, true)) return false;
      if (!safe(value)) return false;
    }
  } else if (const auto* a = node.as_array()) {
    for (const auto& value : *a)
      if (!safe(value)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char dir[] = "/tmp/wacht-config-fuzz.XXXXXX";
  if (!mkdtemp(dir)) std::abort();
  g_path = std::string(dir) + "/wacht.toml";
  // The directory goes when the fuzzer exits normally.
  static struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    toml::table root = toml::parse(text);
    if (!safe(root)) return -1;  // not added to the corpus
  } catch (const toml::parse_error&) {
    // Syntax errors are the loader's to report; they read no file.
  }
  {
    std::ofstream out(g_path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    FUZZ_CHECK(out.good(), "cannot write " + g_path);
  }
  wacht::config::LoadResult result = wacht::config::load(g_path);
  FUZZ_CHECK(result.config || result.diagnostics.has_errors(), "no config and no error");
  FUZZ_CHECK(!result.config || !result.diagnostics.has_errors(), "a config despite errors");
  std::string rendered = result.diagnostics.render();
  FUZZ_CHECK(!result.diagnostics.has_errors() || !rendered.empty(), "errors render as nothing");
  return 0;
}
