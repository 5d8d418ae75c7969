#include "exporters/api_auth.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "support/process.hpp"

namespace wacht::exporters {
namespace {

constexpr std::string_view kSecretA = "aaaaaaaaaaaaaaaa-secret";
constexpr std::string_view kSecretB = "bbbbbbbbbbbbbbbb-secret";

std::string parse_error(const std::string& text) {
  std::string error;
  auto tokens = parse_tokens(text, "/etc/wacht/tokens", &error);
  EXPECT_FALSE(tokens) << text;
  return error;
}

TEST(ApiTokens, ParsesBothSeparatorsCommentsAndBlankLines) {
  std::string error;
  auto tokens =
      parse_tokens("# API clients\n\n  grafana:" + std::string(kSecretA) + "\r\nnagios\t " +
                       std::string(kSecretB) + "  \n   # indented comment\nci : 0123456789abcdef",
                   "/etc/wacht/tokens", &error);
  ASSERT_TRUE(tokens) << error;
  ASSERT_EQ(tokens->size(), 3u);
  EXPECT_EQ((*tokens)[0].name, "grafana");
  EXPECT_EQ((*tokens)[0].secret, kSecretA);
  EXPECT_EQ((*tokens)[1].name, "nagios");
  EXPECT_EQ((*tokens)[1].secret, kSecretB);
  EXPECT_EQ((*tokens)[2].name, "ci");
  EXPECT_EQ((*tokens)[2].secret, "0123456789abcdef");
  auto empty = parse_tokens("# nobody yet\n", "/x", &error);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(ApiTokens, ErrorsNameTheLineAndNeverTheToken) {
  const std::string a(kSecretA);
  const std::string p = "tokens file /etc/wacht/tokens line ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a:" + a + "\n\n# c\n" + a, p + "4: expected 'name:token'"},
      {":" + a, p + "1: expected 'name:token'"},
      {"grafana:", p + "1: empty token for 'grafana'"},
      {"grafana   ", p + "1: expected 'name:token'"},
      {"grafana:short", p + "1: token for 'grafana' is shorter than 16 characters"},
      {"grafana:aaaaaaaa bbbbbbbbbbb",
       p + "1: token for 'grafana' has a character a bearer token cannot carry (allowed: "
           "letters, digits and -._~+/=)"},
      {"grafana:" + a + "\nnagios:" + std::string(kSecretB) + "\ngrafana:cccccccccccccccccc",
       p + "3: duplicate name 'grafana' (first on line 1)"},
      {"grafana:" + a + "\nnagios:" + a, p + "2: token for 'nagios' is the same as for 'grafana' "
                                             "(line 1)"},
      {"loopback:" + a, p + "1: name 'loopback' is reserved for requests without a token"},
      {"anonymous:" + a, p + "1: name 'anonymous' is reserved for requests without a token"},
  };
  for (const auto& [text, want] : cases) {
    std::string error = parse_error(text);
    EXPECT_EQ(error, want) << text;
    EXPECT_EQ(error.find(a), std::string::npos) << error;
    EXPECT_EQ(error.find("aaaaaaaa"), std::string::npos) << error;
  }
}

TEST(ApiTokens, LoadsAFileAndFlagsOneOthersCanRead) {
  std::string dir = test::make_temp_dir();
  std::string path = dir + "/tokens";
  std::ofstream(path) << "grafana:" << kSecretA << "\n";
  ::chmod(path.c_str(), 0640);
  std::string error;
  auto file = load_tokens(path, &error);
  ASSERT_TRUE(file) << error;
  EXPECT_EQ(file->tokens.size(), 1u);
  EXPECT_FALSE(file->readable_by_others);
  ::chmod(path.c_str(), 0644);
  file = load_tokens(path, &error);
  ASSERT_TRUE(file) << error;
  EXPECT_TRUE(file->readable_by_others);

  EXPECT_FALSE(load_tokens(dir + "/missing", &error));
  EXPECT_EQ(error, "cannot read tokens file " + dir + "/missing: No such file or directory");
  std::ofstream(path) << "grafana " << kSecretA << "\nbroken\n";
  EXPECT_FALSE(load_tokens(path, &error));
  EXPECT_EQ(error, "tokens file " + path + " line 2: expected 'name:token'");
  std::filesystem::remove_all(dir);
}

TEST(ApiTokens, AuthenticateFindsTheNameOfABearerToken) {
  const Tokens tokens = {{"grafana", std::string(kSecretA)}, {"nagios", std::string(kSecretB)}};
  const std::string a(kSecretA);
  EXPECT_EQ(authenticate(tokens, "Bearer " + a), "grafana");
  EXPECT_EQ(authenticate(tokens, "Bearer " + std::string(kSecretB)), "nagios");
  EXPECT_EQ(authenticate(tokens, "bearer   " + a + " "), "grafana");
  for (const std::string& bad : std::vector<std::string>{
           "", "Bearer", "Bearer ", a, "Basic " + a, "Bearer " + a + "x",
           "Bearer " + a.substr(0, a.size() - 1), "Bearerx " + a, "Bearer " + a + " extra"})
    EXPECT_EQ(authenticate(tokens, bad), std::nullopt) << bad;
  EXPECT_EQ(authenticate({}, "Bearer " + a), std::nullopt);
}

TEST(ApiTokens, AccessPolicy) {
  const Tokens tokens = {{"grafana", std::string(kSecretA)}};
  const std::string good = "Bearer " + std::string(kSecretA);
  const std::string bad = "Bearer cccccccccccccccccccc";
  struct Case {
    ReadAccess read;
    Access access;
    std::string header;
    bool loopback;
    std::optional<std::string> want;
  };
  const std::vector<Case> cases = {
      // Writes need a token from everywhere.
      {ReadAccess::open, Access::write, "", true, std::nullopt},
      {ReadAccess::loopback, Access::write, bad, true, std::nullopt},
      {ReadAccess::loopback, Access::write, good, false, "grafana"},
      // Reads by default: open on loopback, a token from elsewhere.
      {ReadAccess::loopback, Access::read, "", true, "loopback"},
      {ReadAccess::loopback, Access::read, "", false, std::nullopt},
      {ReadAccess::loopback, Access::read, good, false, "grafana"},
      {ReadAccess::loopback, Access::read, bad, true, std::nullopt},
      {ReadAccess::token, Access::read, "", true, std::nullopt},
      {ReadAccess::token, Access::read, good, true, "grafana"},
      {ReadAccess::open, Access::read, "", false, "anonymous"},
      {ReadAccess::open, Access::read, bad, false, "anonymous"},
      {ReadAccess::open, Access::read, good, false, "grafana"},
      // Open routes (metrics, signed links) refuse nobody.
      {ReadAccess::token, Access::open, "", false, "anonymous"},
      {ReadAccess::token, Access::open, bad, true, "loopback"},
  };
  for (const auto& c : cases)
    EXPECT_EQ(authorize(tokens, c.read, c.access, c.header, c.loopback), c.want)
        << static_cast<int>(c.read) << " " << static_cast<int>(c.access) << " '" << c.header << "' "
        << c.loopback;
  EXPECT_EQ(parse_read_access("loopback"), ReadAccess::loopback);
  EXPECT_EQ(parse_read_access("token"), ReadAccess::token);
  EXPECT_EQ(parse_read_access("open"), ReadAccess::open);
  EXPECT_EQ(parse_read_access("Open"), std::nullopt);
}

TEST(ApiTokens, LoopbackAddresses) {
  for (const char* ip : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(is_loopback_address(ip)) << ip;
  for (const char* ip : {"10.0.0.1", "128.0.0.1", "::", "::ffff:10.0.0.1", "fe80::1", "", "local"})
    EXPECT_FALSE(is_loopback_address(ip)) << ip;
}

TEST(SignedTokens, RoundTripWithAnyPayload) {
  const std::string key(32, 'k');
  for (const std::string& payload :
       {std::string("ack:lup-ldap:42"), std::string("a.b.c/+?=&"), std::string("\0\xff\n", 3),
        std::string(), std::string("Prüfung")}) {
    std::string token = sign_token(key, payload, 1000);
    EXPECT_EQ(token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789-_."),
              std::string::npos)
        << token;
    std::string error;
    EXPECT_EQ(verify_token(key, token, 999, &error), payload) << error;
  }
}

TEST(SignedTokens, TamperedExpiredAndMalformedAreRefused) {
  const std::string key(32, 'k');
  const std::string token = sign_token(key, "ack:lup-ldap", 1000);
  auto check = [&](const std::string& t, int64_t now, const std::string& want) {
    std::string error;
    EXPECT_EQ(verify_token(key, t, now, &error), std::nullopt) << t;
    EXPECT_EQ(error, want) << t;
  };
  check(token, 1000, "expired");
  check(token, 5000, "expired");
  // Every part is covered by the MAC: the payload, the expiry, the MAC itself.
  const size_t dot1 = token.find('.');
  const size_t dot2 = token.rfind('.');
  std::string other_payload = sign_token(key, "ack:lup-www", 1000);
  check(other_payload.substr(0, other_payload.find('.')) + token.substr(dot1), 10, "bad signature");
  check(token.substr(0, dot1) + ".9999" + token.substr(dot2), 10, "bad signature");
  std::string flipped = token;
  flipped[dot2 + 1] = flipped[dot2 + 1] == 'A' ? 'B' : 'A';
  check(flipped, 10, "bad signature");
  check(sign_token(std::string(32, 'x'), "ack:lup-ldap", 1000), 10, "bad signature");
  // An expired token signed with another key is reported as forged, not expired.
  check(sign_token(std::string(32, 'x'), "ack:lup-ldap", 1000), 2000, "bad signature");

  for (const std::string& bad :
       {std::string(), std::string("abc"), token.substr(0, dot2), token + ".x",
        token.substr(0, dot1) + ".-5" + token.substr(dot2),
        token.substr(0, dot1) + ".1e3" + token.substr(dot2),
        token.substr(0, dot1) + "." + token.substr(dot2), "!!" + token,
        token.substr(0, dot2 + 1) + token.substr(dot2 + 2), token + "A", std::string(5000, 'a')})
    check(bad, 10, "malformed");
  EXPECT_THROW(sign_token("", "x", 1), std::invalid_argument);
  EXPECT_THROW(sign_token(key, "x", -1), std::invalid_argument);
}

TEST(SignedTokens, KeyIsCreatedOnceAndKeptPrivate) {
  std::string dir = test::make_temp_dir();
  std::string error;
  std::string key = load_or_create_key(dir, &error);
  ASSERT_EQ(key.size(), 32u) << error;
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/ack.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string text = test::read_text(dir + "/ack.key");
  EXPECT_EQ(text.size(), 65u);
  EXPECT_EQ(text.find_first_not_of("0123456789abcdef\n"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir + "/ack.key.tmp"));

  // A restart reads the same key: links mailed before still verify.
  std::string token = sign_token(key, "ack:lup-ldap", 100);
  std::string again = load_or_create_key(dir, &error);
  EXPECT_EQ(again, key);
  EXPECT_EQ(verify_token(again, token, 1, &error), "ack:lup-ldap");

  std::ofstream(dir + "/ack.key") << "not a key\n";
  EXPECT_EQ(load_or_create_key(dir, &error), "");
  EXPECT_EQ(error, "ack key file " + dir +
                       "/ack.key: expected 64 hex digits; remove it to make a new key (links "
                       "already sent stop working)");

  EXPECT_EQ(load_or_create_key(dir + "/missing", &error), "");
  EXPECT_NE(error.find(dir + "/missing/ack.key"), std::string::npos) << error;
  EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace wacht::exporters
