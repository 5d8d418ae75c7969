#include "exporters/api_auth.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <stdexcept>

#include "runtime/files.hpp"

namespace wacht::exporters {

namespace {

constexpr std::string_view kSpace = " \t";
constexpr size_t kKeyBytes = 32;
constexpr size_t kMacBytes = 32;
// Far above any real link; keeps a hostile query string from costing more.
constexpr size_t kMaxSignedTokenSize = 4096;

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// token68 (RFC 7235): what can follow "Bearer " unquoted.
bool bearer_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("-._~+/=").find(c) != std::string_view::npos;
}

using Digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

Digest sha256(std::string_view s) {
  Digest d;
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return d;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<const char*>(out), len);
}

constexpr std::string_view kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kBase64Url[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kBase64Url[(acc << (6 - bits)) & 0x3f]);
  return out;
}

// Strict: no padding, no other alphabet, unused trailing bits zero, so every
// byte string has exactly one encoding.
std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    size_t v = kBase64Url.find(c);
    if (v == std::string_view::npos) return std::nullopt;
    acc = ((acc << 6) | static_cast<uint32_t>(v)) & 0xffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::optional<int64_t> parse_expiry(std::string_view s) {
  int64_t v = 0;
  if (s.empty() || s.size() > 18) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.front() == '-') return std::nullopt;
  return v;
}

}  // namespace

std::optional<Tokens> parse_tokens(std::string_view text, const std::string& path,
                                   std::string* error) {
  Tokens tokens;
  std::map<std::string, size_t, std::less<>> name_line;
  std::map<Digest, std::pair<std::string, size_t>> token_owner;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (raw.ends_with('\r')) raw.remove_suffix(1);
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;

    auto fail = [&](const std::string& what) {
      if (error) *error = fmt::format("tokens file {} line {}: {}", path, line_no, what);
      return std::nullopt;
    };
    size_t sep = line.find_first_of(": \t");
    if (sep == std::string_view::npos || sep == 0) return fail("expected 'name:token'");
    std::string_view name = line.substr(0, sep);
    // "name:token", "name token" and "name : token" all mean the same.
    std::string_view secret = trim(line.substr(sep));
    if (secret.starts_with(':')) secret = trim(secret.substr(1));
    if (secret.empty()) return fail(fmt::format("empty token for '{}'", name));
    for (char c : secret)
      if (!bearer_char(c))
        return fail(fmt::format(
            "token for '{}' has a character a bearer token cannot carry (allowed: letters, "
            "digits and -._~+/=)",
            name));
    if (secret.size() < kMinTokenLength)
      return fail(
          fmt::format("token for '{}' is shorter than {} characters", name, kMinTokenLength));
    if (name == "loopback" || name == "anonymous")
      return fail(fmt::format("name '{}' is reserved for requests without a token", name));
    if (auto it = name_line.find(name); it != name_line.end())
      return fail(fmt::format("duplicate name '{}' (first on line {})", name, it->second));
    Digest d = sha256(secret);
    if (auto it = token_owner.find(d); it != token_owner.end())
      return fail(fmt::format("token for '{}' is the same as for '{}' (line {})", name,
                              it->second.first, it->second.second));
    name_line.emplace(name, line_no);
    token_owner.emplace(d, std::pair(std::string(name), line_no));
    tokens.push_back({std::string(name), std::string(secret)});
  }
  return tokens;
}

std::optional<TokensFile> load_tokens(const std::string& path, std::string* error) {
  std::string reason;
  auto text = runtime::read_secret_file(path, &reason);
  if (!text) {
    if (error) *error = fmt::format("cannot read tokens file {}: {}", path, reason);
    return std::nullopt;
  }
  auto tokens = parse_tokens(*text, path, error);
  if (!tokens) return std::nullopt;
  struct stat st {};
  bool readable_by_others = ::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0;
  return TokensFile{std::move(*tokens), readable_by_others};
}

std::optional<std::string> authenticate(const Tokens& tokens,
                                        std::string_view authorization_header) {
  std::string_view h = trim(authorization_header);
  constexpr std::string_view kScheme = "bearer";
  if (h.size() <= kScheme.size() || h.find_first_of(kSpace) != kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if ((h[i] | 0x20) != kScheme[i]) return std::nullopt;
  std::string_view presented = trim(h.substr(kScheme.size()));
  if (presented.empty()) return std::nullopt;
  // Digests have one length whatever was sent, and every entry is compared.
  const Digest given = sha256(presented);
  const ApiToken* match = nullptr;
  for (const auto& t : tokens) {
    const Digest want = sha256(t.secret);
    if (CRYPTO_memcmp(given.data(), want.data(), given.size()) == 0) match = &t;
  }
  if (!match) return std::nullopt;
  return match->name;
}

std::optional<ReadAccess> parse_read_access(std::string_view text) {
  if (text == "loopback") return ReadAccess::loopback;
  if (text == "token") return ReadAccess::token;
  if (text == "open") return ReadAccess::open;
  return std::nullopt;
}

std::optional<std::string> authorize(const Tokens& tokens, ReadAccess read, Access access,
                                     std::string_view authorization_header, bool loopback) {
  const bool open = access == Access::open || (access == Access::read && read == ReadAccess::open);
  if (!trim(authorization_header).empty()) {
    if (auto name = authenticate(tokens, authorization_header)) return name;
    if (!open) return std::nullopt;
  }
  if (open) return std::string(loopback ? "loopback" : "anonymous");
  if (access == Access::read && read == ReadAccess::loopback && loopback)
    return std::string("loopback");
  return std::nullopt;
}

bool is_loopback_address(std::string_view ip) {
  const std::string s(ip);
  in_addr a4{};
  if (inet_pton(AF_INET, s.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, s.c_str(), &a6) != 1) return false;
  return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
}

std::string sign_token(std::string_view key, std::string_view payload, int64_t expires_unix) {
  if (key.empty()) throw std::invalid_argument("sign_token: empty key");
  if (expires_unix < 0) throw std::invalid_argument("sign_token: negative expiry");
  std::string signed_part = base64url_encode(payload) + "." + std::to_string(expires_unix);
  std::string mac = base64url_encode(hmac_sha256(key, signed_part));
  return signed_part + "." + mac;
}

std::optional<std::string> verify_token(std::string_view key, std::string_view token,
                                        int64_t now_unix, std::string* error) {
  if (key.empty()) throw std::invalid_argument("verify_token: empty key");
  auto fail = [&](const char* why) {
    if (error) *error = why;
    return std::nullopt;
  };
  if (token.size() > kMaxSignedTokenSize) return fail("malformed");
  const size_t a = token.find('.');
  const size_t b = a == std::string_view::npos ? a : token.find('.', a + 1);
  if (b == std::string_view::npos || token.find('.', b + 1) != std::string_view::npos)
    return fail("malformed");
  auto payload = base64url_decode(token.substr(0, a));
  auto expiry = parse_expiry(token.substr(a + 1, b - a - 1));
  auto mac = base64url_decode(token.substr(b + 1));
  if (!payload || !expiry || !mac || mac->size() != kMacBytes) return fail("malformed");
  const std::string want = hmac_sha256(key, token.substr(0, b));
  if (CRYPTO_memcmp(want.data(), mac->data(), kMacBytes) != 0) return fail("bad signature");
  if (now_unix >= *expiry) return fail("expired");
  return payload;
}

std::string load_or_create_key(const std::string& state_dir, std::string* error) {
  const std::string path = state_dir + "/ack.key";
  auto fail = [&](const std::string& what) {
    if (error) *error = what;
    return std::string();
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    std::string reason;
    auto text = runtime::read_secret_file(path, &reason);
    if (!text) return fail(fmt::format("cannot read ack key file {}: {}", path, reason));
    const std::string& stored = *text;
    std::string key;
    for (size_t i = 0; stored.size() == 2 * kKeyBytes && i < stored.size(); i += 2) {
      unsigned v = 0;
      auto [end, ec] = std::from_chars(stored.data() + i, stored.data() + i + 2, v, 16);
      if (ec != std::errc() || end != stored.data() + i + 2) break;
      key.push_back(static_cast<char>(v));
    }
    if (key.size() != kKeyBytes)
      return fail(fmt::format(
          "ack key file {}: expected {} hex digits; remove it to make a new key (links already "
          "sent stop working)",
          path, 2 * kKeyBytes));
    return key;
  }
  if (errno != ENOENT)
    return fail(fmt::format("cannot read ack key file {}: {}", path, std::strerror(errno)));
  unsigned char raw[kKeyBytes];
  if (RAND_bytes(raw, sizeof raw) != 1) return fail("cannot make an ack key: no randomness");
  std::string hex;
  for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
  std::string why;
  if (!runtime::write_file_atomically(path, hex + "\n", &why)) return fail(why);
  // The temp file is created 0600, but one left over from a crash may not be.
  if (::chmod(path.c_str(), 0600) != 0)
    return fail(fmt::format("cannot chmod ack key file {}: {}", path, std::strerror(errno)));
  return std::string(reinterpret_cast<const char*>(raw), sizeof raw);
}

}  // namespace wacht::exporters
