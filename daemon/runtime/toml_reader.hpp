#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/diagnostics.hpp"
#include "runtime/duration.hpp"

namespace toml {
inline namespace v3 {
class node;
class table;
class key;
struct source_region;
}  // namespace v3
}  // namespace toml

namespace wacht::runtime {

// One documented config key. Sections and probes declare their keys as a table
// of these (fluent-bit's config map): the reader accepts nothing else, and the
// configuration reference is tested against these tables.
struct KeySpec {
  std::string_view name;
  std::string_view type;           // as shown in the reference: "string", "duration", ...
  std::string_view default_value;  // as documented; empty when required or unset
  std::string_view help;
};

using StringPairs = std::vector<std::pair<std::string, std::string>>;

SourceLoc to_loc(const toml::source_region& region, unsigned length = 1);
SourceLoc key_loc(const toml::key& key);

// Typed, located access to one logical config table, assembled from layers
// (defaults, a template, the table itself): a later layer overrides an earlier
// one and every value keeps the location where it was written. Getters report
// wrong types to the Diagnostics and return nullopt; finish() reports every key
// that was not declared, with the closest declared key as a suggestion.
class TableReader {
 public:
  // `context` names the table in messages, e.g. "check 'portal'".
  TableReader(Diagnostics& diag, std::string context, SourceLoc table_loc);

  // `origin` names the layer in messages about its values ("template 'web'",
  // "[defaults]"); empty means the table itself. A value's problem is reported
  // once at the place it was written, however many checks inherit it.
  void add_layer(const toml::table& table, const std::string& origin = {});
  // Adds only the keys named in `only` (inheriting from a defaults section).
  void add_layer(const toml::table& table, std::span<const KeySpec> only,
                 const std::string& origin);
  void declare(std::span<const KeySpec> keys);

  const std::string& context() const { return context_; }
  Diagnostics& diagnostics() { return diag_; }
  bool has(std::string_view key) const;
  // The value's location if the key is set, else the table's.
  SourceLoc loc(std::string_view key) const;
  const SourceLoc& table_loc() const { return table_loc_; }
  void error(std::string_view key, std::string message);

  std::optional<std::string> get_string(std::string_view key);
  std::optional<bool> get_bool(std::string_view key);
  std::optional<int64_t> get_int(std::string_view key, int64_t min, int64_t max);
  std::optional<Millis> get_duration(std::string_view key);
  std::optional<std::vector<std::string>> get_string_array(std::string_view key);
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key, int64_t min, int64_t max);
  // A table whose values are all strings, e.g. labels or HTTP headers; sorted by key.
  std::optional<StringPairs> get_string_table(std::string_view key);

  // Reports undeclared keys. Call once after all getters.
  void finish();

  // The effective keys and values in canonical form; equal fingerprints mean
  // equal effective configuration (used to diff checks on reload).
  std::string fingerprint() const;

 private:
  struct Entry {
    const toml::node* node;
    SourceLoc key_loc;
    std::string origin;
  };
  const std::string& origin_of(std::string_view key) const;
  const toml::node* lookup(std::string_view key);
  void type_error(std::string_view key, std::string_view expected);

  Diagnostics& diag_;
  std::string context_;
  SourceLoc table_loc_;
  std::map<std::string, Entry, std::less<>> entries_;
  std::vector<KeySpec> declared_;
};

}  // namespace wacht::runtime
