#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wacht::runtime {

// Where a config value came from. Every typed config value carries one so that
// errors found after parsing (duplicate ids, cycles, ...) can still point at it.
struct SourceLoc {
  std::shared_ptr<const std::string> file;
  unsigned line = 0;
  unsigned column = 0;
  unsigned length = 1;  // characters to underline

  bool valid() const { return file != nullptr && line > 0; }
  std::string to_string() const;  // "file:line:col"
};

enum class Severity { kError, kWarning, kNote };

struct Diagnostic {
  Severity severity = Severity::kError;
  SourceLoc loc;
  std::string message;
};

// Collects every problem of one config load, so an admin sees them all at once,
// and renders them GCC-style (file:line:col: error: ...) with the source line and
// a caret, which editors and CI logs understand.
class Diagnostics {
 public:
  // Registers a file's text so that rendering can quote its lines.
  void add_source(const std::shared_ptr<const std::string>& file, std::string text);

  void error(const SourceLoc& loc, std::string message);
  void warning(const SourceLoc& loc, std::string message);
  void note(const SourceLoc& loc, std::string message);

  bool has_errors() const { return errors_ > 0; }
  size_t error_count() const { return errors_; }
  const std::vector<Diagnostic>& all() const { return items_; }

  // All diagnostics in order of reporting, each with its quoted line.
  std::string render() const;

 private:
  void add(Severity severity, const SourceLoc& loc, std::string message);
  std::string quote(const SourceLoc& loc) const;

  std::vector<Diagnostic> items_;
  std::map<std::string, std::string> sources_;
  size_t errors_ = 0;
};

// The candidate closest to `word` by edit distance, or empty if none is close
// enough to be a plausible typo.
std::string closest_match(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace wacht::runtime
