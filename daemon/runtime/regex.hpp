#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace wacht::runtime {

// A PCRE2 pattern, compiled once (JIT when available) and searched many times:
// body checks of HTTP probes, send/expect dialogues. Never std::regex, whose
// recursion overflows the stack on long bodies.
//
// Patterns are UTF-8; subjects may contain any bytes (invalid UTF-8 never
// matches a character but does not fail the search). Backtracking is bounded
// per search, so a catastrophic pattern costs milliseconds and reports an error
// instead of stalling the loop thread.
//
// Copies share the compiled code. search() is const but not thread-safe: one
// compiled pattern and its copies are searched from one thread (the loop).
class Regex {
 public:
  // The compiled pattern, or nullopt with `error` (if given) saying why and where,
  // e.g. "missing closing parenthesis at offset 4".
  static std::optional<Regex> compile(std::string_view pattern, std::string* error = nullptr);

  // Whether the pattern matches anywhere in `subject`. Returns false both for
  // no match and when the search gave up (match limit, JIT stack); in the
  // latter case `error`, if given, says why, and is left untouched otherwise.
  bool search(std::string_view subject, std::string* error = nullptr) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  explicit Regex(std::shared_ptr<const Compiled> compiled, std::string pattern);

  std::shared_ptr<const Compiled> compiled_;
  std::string pattern_;
};

}  // namespace wacht::runtime
