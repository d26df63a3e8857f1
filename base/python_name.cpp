#include "base/python_name.hpp"

#include <algorithm>
#include <cctype>
#include <iterator>

namespace nsbox {

namespace {
// keyword.kwlist of Python 3.11, sorted as bytes. Its soft keywords
// (match, case, _) are identifiers.
constexpr std::string_view kKeywords[] = {
    "False", "None",     "True",  "and",    "as",   "assert", "async",  "await",    "break",
    "class", "continue", "def",   "del",    "elif", "else",   "except", "finally",  "for",
    "from",  "global",   "if",    "import", "in",   "is",     "lambda", "nonlocal", "not",
    "or",    "pass",     "raise", "return", "try",  "while",  "with",   "yield"};
}  // namespace

bool valid_python_identifier(std::string_view s) {
  if (s.empty() || s.size() > 128 || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return !std::binary_search(std::begin(kKeywords), std::end(kKeywords), s);
}

}  // namespace nsbox
