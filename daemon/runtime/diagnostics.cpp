#include "runtime/diagnostics.hpp"

#include <fmt/format.h>
#include <algorithm>

namespace wacht::runtime {

std::string SourceLoc::to_string() const {
  if (!valid()) return file ? *file : std::string("<config>");
  return fmt::format("{}:{}:{}", *file, line, column);
}

void Diagnostics::add_source(const std::shared_ptr<const std::string>& file, std::string text) {
  if (file) sources_[*file] = std::move(text);
}

void Diagnostics::error(const SourceLoc& loc, std::string message) {
  add(Severity::kError, loc, std::move(message));
}
void Diagnostics::warning(const SourceLoc& loc, std::string message) {
  add(Severity::kWarning, loc, std::move(message));
}
void Diagnostics::note(const SourceLoc& loc, std::string message) {
  add(Severity::kNote, loc, std::move(message));
}

void Diagnostics::add(Severity severity, const SourceLoc& loc, std::string message) {
  // A template shared by many checks would otherwise report one mistake per user.
  for (const auto& d : items_) {
    if (d.severity == severity && d.message == message && d.loc.line == loc.line &&
        d.loc.column == loc.column && d.loc.file == loc.file)
      return;
  }
  if (severity == Severity::kError) ++errors_;
  items_.push_back({severity, loc, std::move(message)});
}

std::string Diagnostics::quote(const SourceLoc& loc) const {
  if (!loc.valid()) return {};
  auto it = sources_.find(*loc.file);
  if (it == sources_.end()) return {};
  std::string_view text = it->second;
  size_t start = 0;
  for (unsigned l = 1; l < loc.line; ++l) {
    start = text.find('\n', start);
    if (start == std::string_view::npos) return {};
    ++start;
  }
  size_t end = text.find('\n', start);
  std::string_view line = text.substr(start, end == std::string_view::npos ? end : end - start);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // Tabs keep their width in the marker line so the caret lands under the column.
  std::string marker;
  for (unsigned c = 1; c < loc.column && c - 1 < line.size(); ++c)
    marker += line[c - 1] == '\t' ? '\t' : ' ';
  marker += '^';
  unsigned len = std::max(1u, loc.length);
  if (loc.column - 1 + len > line.size())
    len = line.size() > loc.column - 1 ? line.size() - (loc.column - 1) : 1;
  marker.append(len > 1 ? len - 1 : 0, '~');
  return fmt::format("{:>5} | {}\n      | {}\n", loc.line, line, marker);
}

std::string Diagnostics::render() const {
  std::string out;
  for (const auto& d : items_) {
    const char* kind = d.severity == Severity::kError     ? "error"
                       : d.severity == Severity::kWarning ? "warning"
                                                          : "note";
    out += fmt::format("{}: {}: {}\n", d.loc.to_string(), kind, d.message);
    out += quote(d.loc);
  }
  return out;
}

namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string closest_match(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string_view best;
  size_t best_distance = SIZE_MAX;
  // A longer or shorter spelling of a key ("state_directory" for "state_dir").
  for (auto c : candidates) {
    size_t shorter = std::min(word.size(), c.size());
    if (shorter >= 4 && (word.starts_with(c) || c.starts_with(word))) return std::string(c);
  }
  for (auto c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // Allow roughly one typo per three characters, at least one.
  size_t limit = std::max<size_t>(1, std::max(word.size(), best.size()) / 3);
  if (best.empty() || best_distance > limit) return {};
  return std::string(best);
}

}  // namespace wacht::runtime
