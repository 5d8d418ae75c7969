#define PCRE2_CODE_UNIT_WIDTH 8
#include "runtime/regex.hpp"

#include <fmt/format.h>
#include <pcre2.h>

#include <new>

namespace wacht::runtime {

namespace {

// Backtracking steps one search may take from one start position. A body check
// needs far fewer; a catastrophic pattern ((a+)+$ on "aaaa…b") reaches the
// limit within a few milliseconds and fails the search instead of the loop.
constexpr uint32_t kMatchLimit = 1'000'000;
// Memory for backtracking when the pattern runs without JIT, in KiB.
constexpr uint32_t kHeapLimitKiB = 64 * 1024;
// The JIT's own stack grows on demand up to this size; the default of 32 KiB
// is exhausted by a group repeated over a few thousand bytes.
constexpr size_t kJitStackStart = 32 * 1024;
constexpr size_t kJitStackMax = 1024 * 1024;

std::string error_text(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0)
    return fmt::format("PCRE2 error {}", code);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  // Reused by every search: loop thread only (see the class comment).
  pcre2_match_data* match_data = nullptr;

  Compiled() = default;
  Compiled(const Compiled&) = delete;
  Compiled& operator=(const Compiled&) = delete;
  ~Compiled() {
    pcre2_match_data_free(match_data);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_code_free(code);
  }
};

Regex::Regex(std::shared_ptr<const Compiled> compiled, std::string pattern)
    : compiled_(std::move(compiled)), pattern_(std::move(pattern)) {}

std::optional<Regex> Regex::compile(std::string_view pattern, std::string* error) {
  auto c = std::make_shared<Compiled>();
  int code = 0;
  PCRE2_SIZE offset = 0;
  // MATCH_INVALID_UTF: response bodies are not guaranteed to be UTF-8.
  c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &offset, nullptr);
  if (!c->code) {
    if (error) *error = fmt::format("{} at offset {}", error_text(code), offset);
    return std::nullopt;
  }
  // Without JIT support (some architectures) pcre2_match interprets the pattern.
  const bool jit = pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE) == 0;
  c->context = pcre2_match_context_create(nullptr);
  c->match_data = pcre2_match_data_create(1, nullptr);
  if (!c->context || !c->match_data) throw std::bad_alloc();
  pcre2_set_match_limit(c->context, kMatchLimit);
  pcre2_set_heap_limit(c->context, kHeapLimitKiB);
  if (jit) {
    c->jit_stack = pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr);
    if (!c->jit_stack) throw std::bad_alloc();
    pcre2_jit_stack_assign(c->context, nullptr, c->jit_stack);
  }
  return Regex(std::move(c), std::string(pattern));
}

bool Regex::search(std::string_view subject, std::string* error) const {
  int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()),
                       subject.size(), 0, 0, compiled_->match_data, compiled_->context);
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (error) {
    *error = rc == PCRE2_ERROR_MATCHLIMIT
                 ? std::string("match limit exceeded (the pattern backtracks too much)")
                 : error_text(rc);
  }
  return false;
}

}  // namespace wacht::runtime
