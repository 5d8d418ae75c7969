#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wacht::exporters {

// One API client. `name` is what logs and audit records show; `secret` is what
// the client sends as "Authorization: Bearer <secret>".
struct ApiToken {
  std::string name;
  std::string secret;
};
using Tokens = std::vector<ApiToken>;

inline constexpr size_t kMinTokenLength = 16;

// Parses a tokens file: one `name:token` or `name token` per line; blank lines
// and lines starting with `#` are ignored. Names are unique and may not be
// "loopback" or "anonymous" (the principals of unauthenticated requests).
// Tokens are unique, at least kMinTokenLength characters of the bearer token
// alphabet. On error returns nullopt and sets `error` to the first problem,
// e.g. "tokens file /x line 3: expected 'name:token'". Errors never contain a
// token.
std::optional<Tokens> parse_tokens(std::string_view text, const std::string& path,
                                   std::string* error);

struct TokensFile {
  Tokens tokens;
  // Anyone on the host can read the tokens: the caller logs a warning.
  bool readable_by_others = false;
};
// Reads and parses `path`; read failures give "cannot read tokens file <path>:
// <reason>".
std::optional<TokensFile> load_tokens(const std::string& path, std::string* error);

// The name of the token in "Bearer <token>", else nullopt. Compares digests
// of every token in constant time, so timing reveals neither which token
// nor how much of it matched.
std::optional<std::string> authenticate(const Tokens& tokens,
                                        std::string_view authorization_header);

// What a route needs. `open`: nobody is refused (metrics, health, signed
// acknowledgement links); `read`: ReadAccess decides; `write`: always a token.
enum class Access { open, read, write };
// The `read` setting of the API: open from loopback and with a token from
// elsewhere (the default), always with a token, or open to everyone.
enum class ReadAccess { loopback, token, open };
std::optional<ReadAccess> parse_read_access(std::string_view text);

// The caller's principal (a token name, "loopback" or "anonymous"), or nullopt
// when the request must be refused with 401. A wrong token is refused where a
// token counts, even from loopback, so a misconfigured client notices.
std::optional<std::string> authorize(const Tokens& tokens, ReadAccess read, Access access,
                                     std::string_view authorization_header, bool loopback);

// True for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z in text form.
bool is_loopback_address(std::string_view ip);

// A token for links in emails: base64url(payload) "." expiry "." base64url(
// HMAC-SHA256(key, the first two parts)), no padding, so it fits in a URL
// whatever the payload holds. Valid while the time is before `expires_unix`.
// Throws std::invalid_argument for an empty key or a negative expiry.
std::string sign_token(std::string_view key, std::string_view payload, int64_t expires_unix);
// The payload of a token signed with `key`, or nullopt with `error` set to
// "malformed", "bad signature" or "expired" (checked in that order, so an
// expired token is only reported as such when it is genuine). Tokens longer
// than 4096 characters (payloads beyond about 3000 bytes) are malformed.
std::optional<std::string> verify_token(std::string_view key, std::string_view token,
                                        int64_t now_unix, std::string* error);

// The 32-byte signing key kept in <state_dir>/ack.key (64 hex digits, mode
// 0600), created on first use so links keep working across restarts. On
// failure returns "" and sets `error`.
std::string load_or_create_key(const std::string& state_dir, std::string* error);

}  // namespace wacht::exporters
