// docs/configuration.md cannot drift from the parser: each section's key table
// sits between <!-- keys: NAME --> and <!-- end keys --> and must equal what
// the parser's key tables (config::sections()) render. WACHT_UPDATE_GOLDEN=1
// rewrites the tables in place; the prose around them is written by hand.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "config.hpp"

namespace wacht::config {
namespace {

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else
      out += c;
  }
  return out;
}

std::string render_table(const Section& s) {
  std::string out = "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const auto& k : s.keys) {
    out += "| `" + std::string(k.name) + "` | " + escape(k.type) + " | " +
           (k.default_value.empty() ? "—" : "`" + escape(k.default_value) + "`") + " | " +
           escape(k.help) + " |\n";
  }
  return out;
}

const std::string kDoc = std::string(WACHT_SOURCE_DIR) + "/docs/configuration.md";

TEST(ConfigReference, EverySectionsKeyTableMatchesTheParser) {
  std::ifstream in(kDoc);
  ASSERT_TRUE(in) << kDoc;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc = ss.str();
  std::set<std::string> documented;
  bool update = std::getenv("WACHT_UPDATE_GOLDEN") != nullptr;
  for (const auto& s : sections()) {
    std::string open = "<!-- keys: " + std::string(s.name) + " -->\n";
    size_t begin = doc.find(open);
    if (begin == std::string::npos) {
      ADD_FAILURE() << "docs/configuration.md lacks a key table for section '" << s.name
                    << "' (add the line " << open << ")";
      continue;
    }
    begin += open.size();
    size_t end = doc.find("<!-- end keys -->", begin);
    ASSERT_NE(end, std::string::npos) << s.name;
    std::string want = render_table(s);
    if (update)
      doc.replace(begin, end - begin, want);
    else
      EXPECT_EQ(doc.substr(begin, end - begin), want) << "section " << s.name;
    documented.insert(std::string(s.name));
  }
  // And no table for a section the parser does not have.
  for (size_t at = 0; (at = doc.find("<!-- keys: ", at)) != std::string::npos; ++at) {
    size_t close = doc.find(" -->", at);
    std::string name = doc.substr(at + 11, close - at - 11);
    EXPECT_TRUE(documented.contains(name)) << "documented section '" << name << "' does not exist";
  }
  if (update) std::ofstream(kDoc) << doc;
}

}  // namespace
}  // namespace wacht::config
