#include "tools/args.hpp"

#include <getopt.h>

#include <algorithm>
#include <sstream>

namespace nsbox {

namespace {

constexpr int kHelp = 1000;
constexpr int kFirstOption = 1001;

std::string spelled(const Option& o) {
  return "--" + o.name;
}

}  // namespace

Result<ParsedArgs> parse_options(const std::vector<Option>& options,
                                 const std::vector<std::string>& args) {
  // getopt_long keeps its state in globals and permutes argv: it gets a
  // private copy, and optind = 0 makes glibc start afresh.
  std::vector<std::string> words;
  words.reserve(args.size() + 1);
  words.push_back("nsbox");
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);

  // "-": arguments come back in order as 1 (whatever POSIXLY_CORRECT says);
  // ":": a missing value is ':' rather than a printed complaint.
  std::string shorts = "-:h";
  std::vector<struct option> longs;
  for (size_t i = 0; i < options.size(); i++) {
    const Option& o = options[i];
    longs.push_back({o.name.c_str(), o.value.empty() ? no_argument : required_argument, nullptr,
                     kFirstOption + int(i)});
    if (o.short_name) {
      shorts += o.short_name;
      if (!o.value.empty()) shorts += ':';
    }
  }
  longs.push_back({"help", no_argument, nullptr, kHelp});
  longs.push_back({nullptr, 0, nullptr, 0});

  ParsedArgs out;
  std::string error;
  opterr = 0;
  optind = 0;
  const int argc = int(argv.size()) - 1;
  for (;;) {
    int index = -1;
    const int at = optind == 0 ? 1 : optind;  // the word this call starts on
    int c = getopt_long(argc, argv.data(), shorts.c_str(), longs.data(), &index);
    if (c == -1) break;
    if (!error.empty()) continue;  // the first error is the one reported
    // getopt_long takes any unique prefix of a long name: "--no" would run
    // a function unisolated, and a new option would change what an old
    // abbreviation means. Whole names only, as docker's and git's.
    if ((c >= kFirstOption || c == kHelp) && at < argc + 1 && argv[at]) {
      const std::string word = argv[at];
      const std::string name = word.rfind("--", 0) == 0 ? word.substr(2, word.find('=') - 2) : "";
      const std::string& full =
          c == kHelp ? std::string("help") : options[size_t(c - kFirstOption)].name;
      if (name != full) {
        error = "unknown option --" + name + " (did you mean --" + full + "?)";
        continue;
      }
    }
    if (c == 1) {
      out.positional.push_back(optarg);
      continue;
    }
    if (c == 'h' || c == kHelp) {
      out.help = true;
      continue;
    }
    if (c == '?' || c == ':') {
      std::string word = argv[optind - 1];
      if (optopt && word.rfind("--", 0) != 0) word = std::string("-") + char(optopt);
      word = word.substr(0, word.find('='));
      error = c == '?' ? "unknown option " + word : word + " needs a value";
      continue;
    }
    const Option* o = nullptr;
    if (c >= kFirstOption) {
      o = &options[size_t(c - kFirstOption)];
    } else {
      for (const Option& candidate : options)
        if (candidate.short_name == c) o = &candidate;
    }
    if (!o) {
      error = std::string("unknown option -") + char(c);
      continue;
    }
    std::string value = o->value.empty() ? "" : optarg;
    // "--memory --server URL" is a forgotten value, not a memory of
    // "--server"; "--memory=--x" says what it means.
    if (!o->value.empty() && optarg == argv[optind - 1] && value.rfind("--", 0) == 0) {
      error = spelled(*o) + " needs a value";
      continue;
    }
    if (!o->value.empty() && value.empty() && !o->allow_empty) {
      error = spelled(*o) + " needs a non-empty value";
      continue;
    }
    o->set(value);
  }
  // After "--", the rest are arguments whatever they look like.
  for (int i = optind; i < argc; i++) out.positional.push_back(argv[size_t(i)]);
  optind = 0;
  if (!error.empty()) return make_error("usage", error);
  return out;
}

std::string options_help(const std::vector<Option>& options) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const Option& o : options) {
    std::string left = o.short_name ? std::string("-") + o.short_name + ", " : "";
    left += spelled(o);
    if (!o.value.empty()) left += " " + o.value;
    rows.push_back({left, o.help});
  }
  rows.push_back({"-h, --help", "this text"});
  size_t width = 0;
  for (const auto& [left, help] : rows) width = std::max(width, left.size());
  width = std::max<size_t>(width, 18);
  std::string out;
  for (const auto& [left, help] : rows) {
    std::istringstream lines(help);
    std::string line;
    bool first = true;
    while (std::getline(lines, line)) {
      out += "  " + (first ? left : std::string()) +
             std::string(width + 2 - (first ? left.size() : 0), ' ') + line + "\n";
      first = false;
    }
  }
  return out;
}

}  // namespace nsbox
