// The HTTP API's credentials: the tokens file (exporters::parse_tokens) with
// authenticate/authorize, and signed acknowledgement links (verify_token,
// sign_token). The first byte picks which.
//
// Properties: nothing throws; every token of an accepted file authenticates
// as its name; an error never quotes a token; a link verifies only with the
// exact bytes sign_token makes (one encoding per payload and expiry), and
// sign_token's links verify to their payload until they expire.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "exporters/api_auth.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace wacht::exporters;

const std::string kPath = "/etc/wacht/api-tokens";

void tokens_file(std::string_view text) {
  std::string error;
  std::optional<Tokens> tokens = parse_tokens(text, kPath, &error);
  if (!tokens) {
    FUZZ_CHECK(error.starts_with("tokens file " + kPath + " line "), error);
    // No candidate secret of the input may show up in the message, unless it
    // also occurs where the message legitimately quotes (a name, the path).
    std::string names = kPath;
    std::vector<std::string> secrets;
    for (size_t at = 0; at <= text.size();) {
      size_t nl = text.find('\n', at);
      std::string_view line = text.substr(at, nl == std::string_view::npos ? nl : nl - at);
      at = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
      auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == ':'; };
      while (!line.empty() && blank(line.front()) && line.front() != ':') line.remove_prefix(1);
      size_t sep = line.find_first_of(": \t");
      if (sep == std::string_view::npos) continue;
      names.append(line.substr(0, sep)).push_back('\n');
      std::string_view secret = line.substr(sep);
      while (!secret.empty() && blank(secret.front())) secret.remove_prefix(1);
      secret = secret.substr(0, secret.find_first_of(" \t\r"));
      // Only what could be a bearer token: a name next to quotes and
      // punctuation in the message is not one.
      if (secret.size() >= kMinTokenLength &&
          secret.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-._~+/=") == std::string_view::npos)
        secrets.emplace_back(secret);
    }
    for (const std::string& secret : secrets) {
      if (names.find(secret) != std::string::npos) continue;
      FUZZ_CHECK(error.find(secret) == std::string::npos, "error quotes a token: " + error);
    }
    return;
  }
  for (const ApiToken& t : *tokens) {
    FUZZ_CHECK(t.secret.size() >= kMinTokenLength, t.name);
    FUZZ_CHECK(t.name != "loopback" && t.name != "anonymous", t.name);
    std::optional<std::string> who = authenticate(*tokens, "Bearer " + t.secret);
    FUZZ_CHECK(who && *who == t.name, t.name);
    who = authorize(*tokens, ReadAccess::loopback, Access::write, "bearer  " + t.secret, false);
    FUZZ_CHECK(who && *who == t.name, t.name);
  }
  // The whole input as a header: never throws; refused unless it is a token.
  authorize(*tokens, ReadAccess::token, Access::read, text, true);
  authorize(*tokens, ReadAccess::open, Access::read, text, false);
}

void signed_link(std::string_view text) {
  // key \n token-or-payload; the last 8 bytes before the key give the times.
  int64_t now = 0;
  for (size_t i = 0; i < 8 && !text.empty(); ++i) {
    now = now << 8 | static_cast<unsigned char>(text.back());
    text.remove_suffix(1);
  }
  now &= 0x3fffffffffffffff;
  size_t nl = text.find('\n');
  if (nl == std::string_view::npos || nl == 0) return;
  std::string_view key = text.substr(0, nl);
  std::string_view rest = text.substr(nl + 1);

  std::string error;
  std::optional<std::string> payload = verify_token(key, rest, now, &error);
  if (payload) {
    size_t dot = rest.rfind('.');
    size_t mid = rest.rfind('.', dot - 1);
    int64_t expiry = std::stoll(std::string(rest.substr(mid + 1, dot - mid - 1)));
    FUZZ_CHECK(sign_token(key, *payload, expiry) == rest, "a second encoding verifies");
  } else {
    FUZZ_CHECK(error == "malformed" || error == "bad signature" || error == "expired", error);
  }

  const int64_t expires = now % 4102444800;  // up to 2100
  std::string link = sign_token(key, rest, expires);
  payload = verify_token(key, link, expires - 1, &error);
  if (link.size() > 4096) {
    FUZZ_CHECK(!payload && error == "malformed", "an overlong link verifies");
  } else {
    FUZZ_CHECK(payload && *payload == rest, "sign_token's link does not verify: " + error);
    FUZZ_CHECK(!verify_token(key, link, expires, &error) && error == "expired", error);
    std::string other(key);
    other.back() ^= 1;
    FUZZ_CHECK(!verify_token(other, link, expires - 1, &error) && error == "bad signature", error);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: tokens_file(text); break;
    case 1: signed_link(text); break;
    case 2: is_loopback_address(text); break;
  }
  return 0;
}
