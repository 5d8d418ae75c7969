#include "runtime/toml_reader.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>
#include <algorithm>
#include <cassert>
#include <sstream>

namespace wacht::runtime {

SourceLoc to_loc(const toml::source_region& region, unsigned length) {
  return SourceLoc{region.path, region.begin.line, region.begin.column, length};
}

SourceLoc key_loc(const toml::key& key) {
  return to_loc(key.source(), static_cast<unsigned>(std::max<size_t>(1, key.str().size())));
}

namespace {

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date/time";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "nothing";
  }
}

// The length of a value as written, for the caret: strings include their quotes.
unsigned value_length(const toml::node& n) {
  const auto& r = n.source();
  if (r.begin.line == r.end.line && r.end.column > r.begin.column)
    return r.end.column - r.begin.column;
  return 1;
}

}  // namespace

TableReader::TableReader(Diagnostics& diag, std::string context, SourceLoc table_loc)
    : diag_(diag), context_(std::move(context)), table_loc_(std::move(table_loc)) {}

void TableReader::add_layer(const toml::table& table, const std::string& origin) {
  for (const auto& [k, v] : table) entries_[std::string(k.str())] = Entry{&v, key_loc(k), origin};
}

void TableReader::add_layer(const toml::table& table, std::span<const KeySpec> only,
                            const std::string& origin) {
  for (const auto& [k, v] : table) {
    for (const auto& spec : only) {
      if (spec.name == k.str()) entries_[std::string(k.str())] = Entry{&v, key_loc(k), origin};
    }
  }
}

const std::string& TableReader::origin_of(std::string_view key) const {
  auto it = entries_.find(key);
  return it == entries_.end() || it->second.origin.empty() ? context_ : it->second.origin;
}

void TableReader::declare(std::span<const KeySpec> keys) {
  declared_.insert(declared_.end(), keys.begin(), keys.end());
}

bool TableReader::has(std::string_view key) const { return entries_.contains(key); }

SourceLoc TableReader::loc(std::string_view key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return table_loc_;
  return to_loc(it->second.node->source(), value_length(*it->second.node));
}

void TableReader::error(std::string_view key, std::string message) {
  diag_.error(loc(key), fmt::format("{}: {}", origin_of(key), message));
}

const toml::node* TableReader::lookup(std::string_view key) {
  assert(std::any_of(declared_.begin(), declared_.end(),
                     [&](const KeySpec& k) { return k.name == key; }) &&
         "every key read must be declared");
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : it->second.node;
}

void TableReader::type_error(std::string_view key, std::string_view expected) {
  auto it = entries_.find(key);
  error(key, fmt::format("'{}' must be {}, not {}", key, expected, type_name(*it->second.node)));
}

std::optional<std::string> TableReader::get_string(std::string_view key) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (auto v = n->value<std::string>(); v && n->is_string()) return *v;
  type_error(key, "a string");
  return std::nullopt;
}

std::optional<bool> TableReader::get_bool(std::string_view key) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (n->is_boolean()) return n->value<bool>();
  type_error(key, "true or false");
  return std::nullopt;
}

std::optional<int64_t> TableReader::get_int(std::string_view key, int64_t min, int64_t max) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (!n->is_integer()) {
    type_error(key, "an integer");
    return std::nullopt;
  }
  int64_t v = *n->value<int64_t>();
  if (v < min || v > max) {
    error(key, fmt::format("'{}' must be between {} and {}, not {}", key, min, max, v));
    return std::nullopt;
  }
  return v;
}

std::optional<Millis> TableReader::get_duration(std::string_view key) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  if (!n->is_string()) {
    type_error(key, "a duration string such as \"30s\"");
    return std::nullopt;
  }
  std::string why;
  auto d = parse_duration(*n->value<std::string_view>(), &why);
  if (!d) {
    error(key, fmt::format("'{}' is not a valid duration: {}", key, why));
    return std::nullopt;
  }
  return d;
}

std::optional<std::vector<std::string>> TableReader::get_string_array(std::string_view key) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  const toml::array* arr = n->as_array();
  if (!arr) {
    type_error(key, "an array of strings");
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const auto& el : *arr) {
    if (!el.is_string()) {
      diag_.error(to_loc(el.source(), value_length(el)),
                  fmt::format("{}: '{}' must contain only strings, not {}", origin_of(key), key,
                              type_name(el)));
      return std::nullopt;
    }
    out.emplace_back(*el.value<std::string>());
  }
  return out;
}

std::optional<std::vector<int64_t>> TableReader::get_int_array(std::string_view key, int64_t min,
                                                               int64_t max) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  const toml::array* arr = n->as_array();
  if (!arr) {
    type_error(key, "an array of integers");
    return std::nullopt;
  }
  std::vector<int64_t> out;
  for (const auto& el : *arr) {
    SourceLoc at = to_loc(el.source(), value_length(el));
    if (!el.is_integer()) {
      diag_.error(at, fmt::format("{}: '{}' must contain only integers, not {}", origin_of(key),
                                  key, type_name(el)));
      return std::nullopt;
    }
    int64_t v = *el.value<int64_t>();
    if (v < min || v > max) {
      diag_.error(at, fmt::format("{}: values of '{}' must be between {} and {}, not {}",
                                  origin_of(key), key, min, max, v));
      return std::nullopt;
    }
    out.push_back(v);
  }
  return out;
}

std::optional<StringPairs> TableReader::get_string_table(std::string_view key) {
  const toml::node* n = lookup(key);
  if (!n) return std::nullopt;
  const toml::table* t = n->as_table();
  if (!t) {
    type_error(key, "a table of strings");
    return std::nullopt;
  }
  StringPairs out;
  bool ok = true;
  for (const auto& [k, v] : *t) {
    if (!v.is_string()) {
      diag_.error(to_loc(v.source(), value_length(v)),
                  fmt::format("{}: value of '{}.{}' must be a string, not {}", origin_of(key), key,
                              k.str(), type_name(v)));
      ok = false;
      continue;
    }
    out.emplace_back(std::string(k.str()), *v.value<std::string>());
  }
  if (!ok) return std::nullopt;
  std::sort(out.begin(), out.end());
  return out;
}

void TableReader::finish() {
  std::vector<std::string_view> names;
  for (const auto& k : declared_) names.push_back(k.name);
  for (const auto& [key, entry] : entries_) {
    if (std::find(names.begin(), names.end(), key) != names.end()) continue;
    std::string hint = closest_match(key, names);
    std::string where = entry.origin.empty() ? "" : " (set in " + entry.origin + ")";
    diag_.error(entry.key_loc, hint.empty()
                                   ? fmt::format("{}: unknown key '{}'{}", context_, key, where)
                                   : fmt::format("{}: unknown key '{}'{}; did you mean '{}'?",
                                                 context_, key, where, hint));
  }
}

std::string TableReader::fingerprint() const {
  std::ostringstream out;
  for (const auto& [key, entry] : entries_) {
    out << key << '=';
    if (const auto* t = entry.node->as_table())
      out << toml::toml_formatter(*t);
    else if (const auto* a = entry.node->as_array())
      out << toml::toml_formatter(*a);
    else
      entry.node->visit([&](const auto& v) { out << toml::toml_formatter(v); });
    out << '\n';
  }
  return out.str();
}

}  // namespace wacht::runtime
