// The file-backed function registry: naming, versioning, durability layout,
// crash leftovers and concurrent deploys, on a temporary directory.
#include "gateway/registry.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/temp_dir.hpp"

using nsbox::FunctionMeta;
using nsbox::FunctionStore;
using nsbox::FunctionVersion;
using nsbox::open_file_store;
using nsbox::valid_function_name;

namespace {

// The latest version with its source, as a cold start reads it.
std::optional<FunctionVersion> latest_of(FunctionStore& store, const std::string& name) {
  auto meta = store.latest_meta(name);
  if (!meta) return std::nullopt;
  return store.get(name, meta->version);
}

}  // namespace

namespace fs = std::filesystem;

namespace {

using nsbox::test::TempDir;

std::unique_ptr<FunctionStore> open_ok(const std::string& dir) {
  auto r = open_file_store(dir);
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().message()));
  return std::move(r).value();
}

FunctionVersion fv_of(const std::string& source, const std::string& handler = "handler") {
  FunctionVersion fv;
  fv.source = source;
  fv.meta.handler = handler;
  return fv;
}

FunctionMeta put_ok(FunctionStore& s, const std::string& name, const FunctionVersion& fv) {
  auto r = s.put(name, fv);
  REQUIRE_MESSAGE(bool(r), (r ? std::string() : r.error().message()));
  return r.value();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

void check_same_meta(const FunctionMeta& a, const FunctionMeta& b) {
  CHECK(a.name == b.name);
  CHECK(a.version == b.version);
  CHECK(a.handler == b.handler);
  CHECK(a.policy == b.policy);
  CHECK(a.memory_mb == b.memory_mb);
  CHECK(a.timeout_ms == b.timeout_ms);
  CHECK(a.created_unix_ms == b.created_unix_ms);
  CHECK(a.sha256 == b.sha256);
  CHECK(a.source_bytes == b.source_bytes);
}

}  // namespace

TEST_SUITE_BEGIN("registry");

TEST_CASE("registry: valid_function_name") {
  CHECK(valid_function_name("a"));
  CHECK(valid_function_name("0"));
  CHECK(valid_function_name("hello-world_2"));
  CHECK(valid_function_name("a_b"));
  CHECK(valid_function_name("9lives"));
  CHECK(valid_function_name(std::string(63, 'x')));
  CHECK_FALSE(valid_function_name(""));
  CHECK_FALSE(valid_function_name(std::string(64, 'x')));
  CHECK_FALSE(valid_function_name("Hello"));
  CHECK_FALSE(valid_function_name("helloW"));
  CHECK_FALSE(valid_function_name("-a"));
  CHECK_FALSE(valid_function_name("_a"));
  CHECK_FALSE(valid_function_name("a/b"));
  CHECK_FALSE(valid_function_name("/"));
  CHECK_FALSE(valid_function_name(".."));
  CHECK_FALSE(valid_function_name("."));
  CHECK_FALSE(valid_function_name("a.b"));
  CHECK_FALSE(valid_function_name("a b"));
  CHECK_FALSE(valid_function_name("caf\xc3\xa9"));  // "café"
  CHECK_FALSE(valid_function_name(std::string("a\0b", 3)));
}

TEST_CASE("registry: put assigns versions; latest, get, list, versions") {
  TempDir tmp("registry");
  auto store = open_ok(tmp.path);
  CHECK_FALSE(latest_of(*store, "f").has_value());
  CHECK(store->list().empty());

  FunctionVersion v1 = fv_of("abc");
  v1.meta.policy = "strict";
  v1.meta.memory_mb = 128;
  v1.meta.timeout_ms = 3000;
  v1.meta.version = 77;  // ignored: put() numbers versions
  FunctionMeta m1 = put_ok(*store, "f", v1);
  CHECK(m1.name == "f");
  CHECK(m1.version == 1);
  CHECK(m1.policy == "strict");
  CHECK(m1.memory_mb == 128);
  CHECK(m1.timeout_ms == 3000);
  CHECK(m1.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(m1.source_bytes == 3);
  CHECK(m1.created_unix_ms > 1600000000000);

  CHECK(put_ok(*store, "f", fv_of("def second")).version == 2);
  FunctionMeta m3 = put_ok(*store, "f", fv_of("def third", "main"));
  CHECK(m3.version == 3);
  put_ok(*store, "b", fv_of("b source"));

  auto latest = latest_of(*store, "f");
  REQUIRE(latest.has_value());
  CHECK(latest->source == "def third");
  check_same_meta(latest->meta, m3);
  CHECK(latest->meta.handler == "main");
  auto meta = store->latest_meta("f");
  REQUIRE(meta.has_value());
  check_same_meta(*meta, m3);
  CHECK_FALSE(store->latest_meta("nope").has_value());

  auto g1 = store->get("f", 1);
  REQUIRE(g1.has_value());
  CHECK(g1->source == "abc");
  check_same_meta(g1->meta, m1);
  REQUIRE(store->get("f", 2).has_value());
  CHECK(store->get("f", 2)->source == "def second");
  CHECK_FALSE(store->get("f", 4).has_value());
  CHECK_FALSE(store->get("f", 0).has_value());
  CHECK_FALSE(store->get("nope", 1).has_value());

  auto list = store->list();
  REQUIRE(list.size() == 2);
  CHECK(list[0].name == "b");
  CHECK(list[0].version == 1);
  CHECK(list[1].name == "f");
  CHECK(list[1].version == 3);
  CHECK(list[1].handler == "main");

  CHECK(store->versions("f") == std::vector<uint64_t>{1, 2, 3});
  CHECK(store->versions("nope").empty());

  // The layout other tools (backups, the later shared store) rely on.
  CHECK(fs::is_regular_file(tmp.path + "/functions/f/3.json"));
  struct stat st;
  REQUIRE(::stat((tmp.path + "/functions/f/3.json").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto j = nlohmann::json::parse(std::ifstream(tmp.path + "/functions/f/3.json"));
  CHECK(j["source"] == "def third");
  CHECK(j["version"] == 3);
}

TEST_CASE("registry: meta_to_json keys") {
  FunctionMeta m;
  m.name = "f";
  m.version = 4;
  m.created_unix_ms = 12;
  auto j = nsbox::meta_to_json(m);
  for (const char* k : {"name", "version", "handler", "policy", "memory_mb", "timeout_ms",
                        "template", "created_unix_ms", "sha256", "source_bytes"})
    CHECK_MESSAGE(j.contains(k), k);
  CHECK(j.size() == 10);
  CHECK(j["template"] == false);
  CHECK(j["version"] == 4);
  CHECK(j["handler"] == "handler");
}

TEST_CASE("registry: deploy numbers tell a redeploy under a reused version apart") {
  TempDir tmp("registry");
  auto store = open_ok(tmp.path);
  FunctionMeta first = put_ok(*store, "f", fv_of("same source"));
  FunctionMeta other = put_ok(*store, "g", fv_of("g"));
  CHECK(first.deploy > 0);
  CHECK(other.deploy > first.deploy);  // one sequence for every function
  CHECK(store->latest_meta("f")->deploy == first.deploy);
  CHECK(store->get("f", 1)->meta.deploy == first.deploy);
  auto removed = store->remove("f");
  REQUIRE(bool(removed));
  CHECK(removed.value() > other.deploy);  // a delete is ordered after every deploy before it
  // Versions restart at 1 after a delete: same name, same version, same
  // source, yet another deploy.
  FunctionMeta second = put_ok(*store, "f", fv_of("same source"));
  REQUIRE(second.version == first.version);
  CHECK(second.deploy > removed.value());
  CHECK(store->get("f", 1)->meta.deploy == second.deploy);
  FunctionMeta third = put_ok(*store, "f", fv_of("v2"));
  CHECK(third.deploy > second.deploy);
  // An older version read back from disk (not the cached latest) carries
  // its own number.
  CHECK(store->get("f", 1)->meta.deploy == second.deploy);
  CHECK(store->get("f", 2)->meta.deploy == third.deploy);
  // Reopened, numbers start afresh but keep each function's versions in
  // order and tell every version of every function apart.
  store.reset();
  auto reopened = open_ok(tmp.path);
  uint64_t f1 = reopened->get("f", 1)->meta.deploy, f2 = reopened->get("f", 2)->meta.deploy;
  uint64_t g1 = reopened->get("g", 1)->meta.deploy;
  CHECK(f1 > 0);
  CHECK(f2 > f1);
  CHECK(g1 != f1);
  CHECK(g1 != f2);
  CHECK(reopened->latest_meta("f")->deploy == f2);
  CHECK(put_ok(*reopened, "g", fv_of("g2")).deploy > std::max({f1, f2, g1}));
}

TEST_CASE("registry: remove and redeploy") {
  TempDir tmp("registry");
  auto store = open_ok(tmp.path);
  put_ok(*store, "f", fv_of("1"));
  put_ok(*store, "f", fv_of("2"));
  put_ok(*store, "g", fv_of("g"));

  auto r = store->remove("f");
  REQUIRE(bool(r));
  CHECK(r.value() > 0);
  CHECK_FALSE(latest_of(*store, "f").has_value());
  CHECK_FALSE(store->latest_meta("f").has_value());
  CHECK_FALSE(store->get("f", 1).has_value());
  CHECK(store->versions("f").empty());
  auto list = store->list();
  REQUIRE(list.size() == 1);
  CHECK(list[0].name == "g");
  CHECK_FALSE(fs::exists(tmp.path + "/functions/f"));

  auto again = store->remove("f");
  REQUIRE(bool(again));
  CHECK(again.value() == 0);
  auto bad = store->remove("../x");
  REQUIRE(bool(bad));
  CHECK(bad.value() == 0);

  CHECK(put_ok(*store, "f", fv_of("new")).version == 1);
  CHECK(latest_of(*store, "f")->source == "new");
  CHECK(store->latest_meta("f")->version == 1);
  CHECK(store->versions("f") == std::vector<uint64_t>{1});

  // Nothing but the live functions is left behind.
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp.path + "/functions"))
    names.insert(e.path().filename().string());
  CHECK(names == std::set<std::string>{"f", "g"});
}

TEST_CASE("registry: a second open sees everything") {
  TempDir tmp("registry");
  std::vector<FunctionMeta> metas;
  {
    auto store = open_ok(tmp.path);
    FunctionVersion a = fv_of("def handler(e, c):\n    return 'caf\xc3\xa9'\n", "h1");
    a.meta.policy = "net";
    a.meta.memory_mb = 256;
    a.meta.timeout_ms = 1500;
    metas.push_back(put_ok(*store, "alpha", a));
    metas.push_back(put_ok(*store, "alpha", fv_of("v2", "h2")));
    metas.push_back(put_ok(*store, "beta", fv_of("beta")));
    put_ok(*store, "gone", fv_of("x"));
    REQUIRE(store->remove("gone").value());
  }
  auto store = open_ok(tmp.path);
  auto list = store->list();
  REQUIRE(list.size() == 2);
  check_same_meta(list[0], metas[1]);
  check_same_meta(list[1], metas[2]);
  CHECK(store->versions("alpha") == std::vector<uint64_t>{1, 2});
  auto a1 = store->get("alpha", 1);
  REQUIRE(a1.has_value());
  check_same_meta(a1->meta, metas[0]);
  CHECK(a1->source == "def handler(e, c):\n    return 'caf\xc3\xa9'\n");
  auto latest = latest_of(*store, "alpha");
  REQUIRE(latest.has_value());
  check_same_meta(latest->meta, metas[1]);
  CHECK(latest->source == "v2");
  CHECK(latest_of(*store, "alpha")->source == "v2");  // now from the cache
  CHECK_FALSE(latest_of(*store, "gone").has_value());
  CHECK(put_ok(*store, "alpha", fv_of("v3")).version == 3);
}

TEST_CASE("registry: the template option survives a reopen; files without it load") {
  TempDir tmp("registry");
  {
    auto store = open_ok(tmp.path);
    FunctionVersion t = fv_of("with");
    t.meta.use_template = true;
    put_ok(*store, "f", t);
    put_ok(*store, "f", fv_of("without"));
  }
  const std::string fdir = tmp.path + "/functions/f";
  auto read = [&](int v) {
    std::ifstream in(fdir + "/" + std::to_string(v) + ".json");
    return nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  };
  // A version file from before the option existed (no key), and one whose
  // option is not a boolean.
  auto old = read(2);
  old.erase("template");
  old["version"] = 3;
  write_text(fdir + "/3.json", old.dump());
  auto bad = read(2);
  bad["template"] = "yes";
  bad["version"] = 4;
  write_text(fdir + "/4.json", bad.dump());

  auto store = open_ok(tmp.path);
  CHECK(store->get("f", 1)->meta.use_template);
  CHECK_FALSE(store->get("f", 2)->meta.use_template);
  REQUIRE(store->get("f", 3).has_value());
  CHECK_FALSE(store->get("f", 3)->meta.use_template);
  CHECK_FALSE(store->get("f", 4).has_value());
  CHECK(store->versions("f") == std::vector<uint64_t>{1, 2, 3});
}

TEST_CASE("registry: open cleans crash leftovers and skips bad files") {
  TempDir tmp("registry");
  {
    auto store = open_ok(tmp.path);
    put_ok(*store, "f", fv_of("one"));
    put_ok(*store, "f", fv_of("two"));
  }
  const std::string fdir = tmp.path + "/functions/f";
  const std::string leftover_tmp = fdir + "/.3.json.tmp-1-1";
  write_text(leftover_tmp, "{\"partial\":");
  const std::string grave = tmp.path + "/functions/.deleted-x-1-1";
  fs::create_directories(grave);
  write_text(grave + "/1.json", "{}");
  // Torn and garbage version files, and one that claims another identity.
  write_text(fdir + "/3.json", "{\"name\":\"f\",\"vers");
  write_text(fdir + "/4.json", "\x01\x02 garbage");
  std::string two = [&] {
    std::ifstream in(fdir + "/2.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  auto moved = nlohmann::json::parse(two);
  write_text(fdir + "/5.json", moved.dump());  // says version 2
  moved["name"] = "g";
  fs::create_directories(tmp.path + "/functions/h");
  moved["version"] = 1;
  write_text(tmp.path + "/functions/h/1.json", moved.dump());  // says name g
  auto tampered = nlohmann::json::parse(two);
  tampered["source"] = "evil";
  tampered["version"] = 6;
  write_text(fdir + "/6.json", tampered.dump());  // sha256 no longer matches

  auto store = open_ok(tmp.path);
  CHECK_FALSE(fs::exists(leftover_tmp));
  CHECK_FALSE(fs::exists(grave));
  // Kept for inspection, never served.
  for (int v : {3, 4, 5, 6}) CHECK(fs::exists(fdir + "/" + std::to_string(v) + ".json"));
  CHECK(store->versions("f") == std::vector<uint64_t>{1, 2});
  CHECK(latest_of(*store, "f")->source == "two");
  // Version 6 was acknowledged once and cannot be read: the function is
  // marked damaged (and so not served) rather than silently rolled back.
  const std::string damaged = store->latest_meta("f")->damaged;
  CHECK_MESSAGE(damaged.find("version 6 of f cannot be read") != std::string::npos, damaged);
  // Said to whoever invokes f: no host path in it (the log has the file).
  CHECK(damaged.find(tmp.path) == std::string::npos);
  CHECK(damaged.find("the daemon's log says which file") != std::string::npos);
  CHECK(damaged.find("the older version 2 is not served in its place") != std::string::npos);
  CHECK_FALSE(store->get("f", 3).has_value());
  CHECK_FALSE(latest_of(*store, "h").has_value());
  // h's only file claims another name: listed, as damaged, not left out.
  REQUIRE(store->list().size() == 2);
  CHECK(store->list()[1].name == "h");
  CHECK(store->list()[1].damaged.find("version 1 of h cannot be read") != std::string::npos);
  // The next version does not overwrite a skipped file.
  CHECK(put_ok(*store, "f", fv_of("three")).version == 7);
  CHECK(fs::exists(fdir + "/6.json"));
  CHECK(latest_of(*store, "f")->source == "three");
  CHECK(store->latest_meta("f")->damaged.empty());  // a deploy mends it
  store.reset();
  CHECK(open_ok(tmp.path)->latest_meta("f")->damaged.empty());  // 7 is newer than 6
}

TEST_CASE("registry: a function whose only versions cannot be read is damaged, not unknown") {
  TempDir tmp("registry");
  {
    auto store = open_ok(tmp.path);
    put_ok(*store, "a", fv_of("a"));
    put_ok(*store, "f", fv_of("one"));
    put_ok(*store, "f", fv_of("two"));
    put_ok(*store, "z", fv_of("z"));
  }
  write_text(tmp.path + "/functions/f/1.json", "{\"torn");
  write_text(tmp.path + "/functions/f/2.json", "");
  auto store = open_ok(tmp.path);
  // An acknowledged deploy is never answered as one that did not happen.
  auto meta = store->latest_meta("f");
  REQUIRE(meta.has_value());
  CHECK(meta->version == 2);
  CHECK_MESSAGE(meta->damaged.find("version 2 of f cannot be read from the function store, nor "
                                   "any older one") != std::string::npos,
                meta->damaged);
  CHECK(meta->damaged.find(tmp.path) == std::string::npos);
  CHECK(meta->damaged.find("deploy f again, or delete it") != std::string::npos);
  CHECK_FALSE(store->get("f", 2).has_value());
  CHECK(store->versions("f").empty());
  auto all = store->list();
  REQUIRE(all.size() == 3);
  CHECK(all[0].name == "a");
  CHECK(all[1].name == "f");
  CHECK_FALSE(all[1].damaged.empty());
  CHECK(all[2].name == "z");
  // A deploy mends it with the next number; the files stay for inspection.
  CHECK(put_ok(*store, "f", fv_of("three")).version == 3);
  CHECK(store->latest_meta("f")->damaged.empty());
  CHECK(fs::exists(tmp.path + "/functions/f/2.json"));
  // A delete removes it, damaged files and all.
  REQUIRE(store->remove("f"));
  CHECK_FALSE(store->latest_meta("f").has_value());
  store.reset();
  write_text(tmp.path + "/functions/a/1.json", "garbage");
  store = open_ok(tmp.path);
  REQUIRE(store->latest_meta("a").has_value());
  auto removed = store->remove("a");
  REQUIRE(removed);
  CHECK(removed.value() > 0);
  CHECK_FALSE(store->latest_meta("a").has_value());
  CHECK_FALSE(fs::exists(tmp.path + "/functions/a"));
}

TEST_CASE("registry: an unreadable older version leaves the function undamaged") {
  TempDir tmp("registry");
  {
    auto store = open_ok(tmp.path);
    put_ok(*store, "f", fv_of("one"));
    put_ok(*store, "f", fv_of("two"));
  }
  write_text(tmp.path + "/functions/f/1.json", "{\"torn");
  auto store = open_ok(tmp.path);
  CHECK(store->latest_meta("f")->damaged.empty());
  CHECK(latest_of(*store, "f")->source == "two");
}

// Every file in the state dir is hostile input: numbers a deploy would
// refuse (a memory that wraps to 0 bytes when shifted, a timeout of
// centuries) and nesting no version file has are refused as damage, the
// latter as it is read (8 MiB of '[' took 622 MB to parse).
TEST_CASE("registry: a version file with out-of-range limits or any nesting is refused") {
  TempDir tmp("registry");
  const std::string file = tmp.path + "/functions/f/1.json";
  {
    auto store = open_ok(tmp.path);
    put_ok(*store, "f", fv_of("one"));
  }
  std::string good;
  {
    std::ifstream in(file);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto edited = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json j = nlohmann::json::parse(good);
    j[key] = value;
    return j.dump();
  };
  for (const std::string& text :
       {edited("memory_mb", 1ull << 44), edited("memory_mb", 8),
        edited("timeout_ms", 9223372036854ull), edited("timeout_ms", 15 * 60 * 1000 + 1),
        edited("handler", nlohmann::json::array({"h"})), std::string(8u << 20, '['),
        std::string("{\"name\": {\"a\": 1}}")}) {
    CAPTURE(text.substr(0, 120));
    write_text(file, text);
    auto store = open_ok(tmp.path);
    auto meta = store->latest_meta("f");
    REQUIRE(meta.has_value());
    CHECK_FALSE(meta->damaged.empty());
    CHECK_FALSE(store->get("f", 1).has_value());
  }
  // Within the bounds (0: the policy's own): served.
  for (const std::string& text :
       {good, edited("memory_mb", 16), edited("timeout_ms", 0), edited("memory_mb", 1ull << 24)}) {
    write_text(file, text);
    auto store = open_ok(tmp.path);
    CHECK(store->latest_meta("f")->damaged.empty());
    CHECK(store->get("f", 1).has_value());
  }
}

// functions/ that another user may write could hold their code under a
// correct sha256: not served, and said how to fix.
TEST_CASE("registry: a functions/ another user may write is refused at open") {
  TempDir tmp("registry");
  {
    auto store = open_ok(tmp.path);
    put_ok(*store, "f", fv_of("one"));
  }
  const std::string dir = tmp.path + "/functions";
  REQUIRE(chmod(dir.c_str(), 0777) == 0);
  auto open = open_file_store(tmp.path);
  REQUIRE_FALSE(open);
  CHECK_MESSAGE(open.error().message().find(dir + " belongs to uid " + std::to_string(geteuid()) +
                                            " with mode 0777") != std::string::npos,
                open.error().message());
  CHECK(open.error().message().find("chmod go-w") != std::string::npos);
  REQUIRE(chmod(dir.c_str(), 0700) == 0);
  CHECK(open_ok(tmp.path)->get("f", 1).has_value());
  // functions/ moved to another disk and linked: what the link names is
  // checked, not the link (whose mode is always 0777).
  TempDir other("registry-other");
  const std::string moved = other.path + "/functions";
  REQUIRE(rename((tmp.path + "/functions").c_str(), moved.c_str()) == 0);
  REQUIRE(symlink(moved.c_str(), (tmp.path + "/functions").c_str()) == 0);
  CHECK(open_ok(tmp.path)->get("f", 1).has_value());
  REQUIRE(chmod(moved.c_str(), 0770) == 0);
  CHECK_FALSE(open_file_store(tmp.path));
  REQUIRE(chmod(moved.c_str(), 0700) == 0);
  // Above what it names, a directory others may write: they could rename
  // the store away and put theirs in its place.
  REQUIRE(chmod(other.path.c_str(), 0777) == 0);
  auto above = open_file_store(tmp.path);
  REQUIRE_FALSE(above);
  CHECK_MESSAGE(above.error().message().find("functions is a link") != std::string::npos,
                above.error().message());
  REQUIRE(chmod(other.path.c_str(), 0700) == 0);
  CHECK(open_ok(tmp.path)->get("f", 1).has_value());
}

// One function's directory that another user may write (a chmod 777 by
// mistake, another owner): that function is not served, not deployed into,
// and can be deleted; the rest of the store is served as before.
TEST_CASE("registry: a function directory another user may write is that function's damage") {
  TempDir tmp("registry");
  {
    auto store = open_ok(tmp.path);
    put_ok(*store, "a", fv_of("a"));
    put_ok(*store, "f", fv_of("one"));
  }
  const std::string dir = tmp.path + "/functions/f";
  auto check_untrusted = [&](FunctionStore& store) {
    auto meta = store.latest_meta("f");
    REQUIRE(meta.has_value());
    CHECK_MESSAGE(meta->damaged.find("function f is not served: another user may write its "
                                     "directory") != std::string::npos,
                  meta->damaged);
    CHECK(meta->damaged.find(tmp.path) == std::string::npos);
    CHECK(meta->untrusted);
    CHECK_FALSE(store.get("f", 1).has_value());
    auto all = store.list();
    REQUIRE(all.size() == 2);
    CHECK(all[0].name == "a");
    CHECK(all[0].damaged.empty());
    CHECK(all[1].name == "f");
    CHECK_FALSE(all[1].damaged.empty());
    CHECK(store.get("a", 1).has_value());
    auto put = store.put("f", fv_of("mine"));
    REQUIRE_FALSE(put);
    CHECK_MESSAGE(
        put.error().message().find(dir + " may be written by another user") != std::string::npos,
        put.error().message());
    CHECK_FALSE(fs::exists(dir + "/2.json"));
  };
  if (geteuid() == 0) {  // another owner, where this test may chown
    REQUIRE(chown(dir.c_str(), 65534, 65534) == 0);
    check_untrusted(*open_ok(tmp.path));
    REQUIRE(chown(dir.c_str(), 0, 0) == 0);
    CHECK(open_ok(tmp.path)->get("f", 1).has_value());
  }
  REQUIRE(chmod(dir.c_str(), 0777) == 0);
  auto store = open_ok(tmp.path);
  check_untrusted(*store);
  // A delete moves it aside whole, for an operator, rather than walk it:
  // made 0700 (it was 0777), with its file.
  auto removed = store->remove("f");
  REQUIRE(removed);
  CHECK(removed.value() > 0);
  CHECK_FALSE(fs::exists(dir));
  auto aside = [&] {
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(tmp.path + "/functions"))
      if (e.path().filename().string().rfind(".untrusted-f-", 0) == 0) found.push_back(e.path());
    return found;
  };
  REQUIRE(aside().size() == 1);
  CHECK(fs::exists(aside()[0] / "1.json"));
  CHECK((fs::status(aside()[0]).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK_FALSE(store->latest_meta("f").has_value());
  // The name can be deployed again.
  CHECK(put_ok(*store, "f", fv_of("two")).version == 1);
  CHECK(store->get("f", 1)->source == "two");
  // And the next open keeps what was moved aside, beside the new function.
  store.reset();
  store = open_ok(tmp.path);
  REQUIRE(aside().size() == 1);
  CHECK(fs::exists(aside()[0] / "1.json"));
  CHECK(store->get("f", 1)->source == "two");
  CHECK(store->list().size() == 2);
}

// A version file another user owns or may write was not written by this
// daemon: that version is not served, as a torn one is not.
TEST_CASE("registry: a version file another user may write is not served") {
  TempDir tmp("registry");
  {
    auto store = open_ok(tmp.path);
    put_ok(*store, "f", fv_of("one"));
    put_ok(*store, "f", fv_of("two"));
  }
  const std::string file = tmp.path + "/functions/f/2.json";
  REQUIRE(chmod(file.c_str(), 0622) == 0);
  {
    auto store = open_ok(tmp.path);
    auto meta = store->latest_meta("f");
    REQUIRE(meta.has_value());
    CHECK(meta->version == 1);
    CHECK_FALSE(meta->damaged.empty());
    CHECK_FALSE(store->get("f", 2).has_value());
  }
  REQUIRE(chmod(file.c_str(), 0600) == 0);
  CHECK(open_ok(tmp.path)->get("f", 2)->source == "two");
  if (geteuid() == 0) {
    REQUIRE(chown(file.c_str(), 65534, 65534) == 0);
    auto store = open_ok(tmp.path);
    CHECK_FALSE(store->get("f", 2).has_value());
    CHECK_FALSE(store->latest_meta("f")->damaged.empty());
  }
}

// A version file put there while the daemon runs failed every later deploy
// of the name on the same number.
TEST_CASE("registry: a version file planted at runtime costs one deploy, not all") {
  TempDir tmp("registry");
  auto store = open_ok(tmp.path);
  put_ok(*store, "f", fv_of("one"));
  write_text(tmp.path + "/functions/f/2.json", "planted");
  auto refused = store->put("f", fv_of("two"));
  REQUIRE_FALSE(refused);
  CHECK_MESSAGE(refused.error().message().find("2.json exists but was not written by this "
                                               "daemon") != std::string::npos,
                refused.error().message());
  CHECK(put_ok(*store, "f", fv_of("three")).version == 3);
  CHECK(latest_of(*store, "f")->source == "three");
  CHECK(store->versions("f") == std::vector<uint64_t>{1, 3});
}

TEST_CASE("registry: concurrent puts get distinct versions") {
  TempDir tmp("registry");
  auto store = open_ok(tmp.path);
  constexpr int kThreads = 8, kEach = 25;
  std::vector<std::vector<uint64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = store->put("same", fv_of("t" + std::to_string(t) + " i" + std::to_string(i)));
        if (r) got[t].push_back(r.value().version);
        latest_of(*store, "same");  // readers run alongside
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> all;
  size_t count = 0;
  for (const auto& g : got) {
    count += g.size();
    all.insert(g.begin(), g.end());
  }
  CHECK(count == kThreads * kEach);
  CHECK(all.size() == kThreads * kEach);
  std::vector<uint64_t> expect;
  for (uint64_t v = 1; v <= kThreads * kEach; ++v) expect.push_back(v);
  CHECK(store->versions("same") == expect);
  CHECK(latest_of(*store, "same")->meta.version == kThreads * kEach);
  store.reset();
  auto reopened = open_ok(tmp.path);
  CHECK(reopened->versions("same") == expect);
}

TEST_CASE("registry: a store is open in one process at a time") {
  TempDir tmp("registry");
  auto first = open_ok(tmp.path);
  put_ok(*first, "f", fv_of("first"));
  // A second daemon on the same state dir would number its versions from
  // the same files and replace what the first acknowledged.
  auto second = open_file_store(tmp.path);
  REQUIRE_FALSE(second);
  CHECK(second.error().message().find("in use by another nsbox serve") != std::string::npos);
  CHECK(second.error().message().find("--state-dir") != std::string::npos);
  first.reset();
  auto again = open_ok(tmp.path);
  CHECK(again->versions("f") == std::vector<uint64_t>{1});
}

TEST_CASE("registry: a lock file or functions/ that is not what nsbox made says how to fix it") {
  TempDir tmp("registry");
  REQUIRE(symlink("/nonexistent-nsbox-target", (tmp.path + "/functions.lock").c_str()) == 0);
  auto lock = open_file_store(tmp.path);
  REQUIRE_FALSE(lock);
  CHECK_MESSAGE(lock.error().message().find("functions.lock") != std::string::npos,
                lock.error().message());
  CHECK(lock.error().message().find("must be a regular file; remove it and start again") !=
        std::string::npos);
  REQUIRE(unlink((tmp.path + "/functions.lock").c_str()) == 0);
  REQUIRE(symlink("/nonexistent-nsbox-target", (tmp.path + "/functions").c_str()) == 0);
  auto dangling = open_file_store(tmp.path);
  REQUIRE_FALSE(dangling);
  CHECK_MESSAGE(dangling.error().message().find("must be a directory") != std::string::npos,
                dangling.error().message());
  CHECK(dangling.error().message().find("move it aside and start again") != std::string::npos);
}

TEST_CASE("registry: a function directory that is a symlink is refused, not followed") {
  TempDir tmp("registry");
  { auto store = open_ok(tmp.path); }
  fs::create_directories(tmp.path + "/elsewhere");
  fs::create_directory_symlink(tmp.path + "/elsewhere", tmp.path + "/functions/foo");
  auto store = open_ok(tmp.path);
  auto r = store->put("foo", fv_of("x"));
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("not a directory") != std::string::npos);
  CHECK(fs::is_empty(tmp.path + "/elsewhere"));
  CHECK_FALSE(store->latest_meta("foo"));
}

TEST_CASE("registry: bad input is an error, not a crash") {
  TempDir tmp("registry");
  auto store = open_ok(tmp.path);
  for (const char* name : {"", "Bad", "../etc", "a/b", "-x"}) {
    auto r = store->put(name, fv_of("x"));
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("invalid function name") != std::string::npos);
  }
  auto big = store->put("f", fv_of(std::string(nsbox::kMaxSourceBytes + 1, 'x')));
  REQUIRE_FALSE(big);
  CHECK(big.error().message().find("1 MiB") != std::string::npos);
  CHECK(bool(store->put("f", fv_of(std::string(nsbox::kMaxSourceBytes, 'x')))));
  // nlohmann's dump() throws on invalid UTF-8: it must come back as an error.
  auto utf = store->put("g", fv_of("\xff\xfe"));
  REQUIRE_FALSE(utf);
  CHECK_FALSE(latest_of(*store, "g").has_value());
  CHECK_FALSE(fs::exists(tmp.path + "/functions/g/1.json"));
  CHECK(store->versions("f") == std::vector<uint64_t>{1});
}

TEST_CASE("registry: open errors name the step and path") {
  TempDir tmp("registry");
  write_text(tmp.path + "/file", "x");
  auto r = open_file_store(tmp.path + "/file/store");
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find(tmp.path + "/file") != std::string::npos);
}

TEST_CASE("registry: open creates the directory with mode 0700") {
  TempDir tmp("registry");
  auto store = open_ok(tmp.path + "/a/b");
  struct stat st;
  REQUIRE(::stat((tmp.path + "/a/b").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(fs::is_directory(tmp.path + "/a/b/functions"));
}

TEST_SUITE_END();

TEST_CASE(
    "registry: a planted FIFO is skipped without waiting; the last version number is not wrapped") {
  TempDir tmp("registry");
  {
    auto store = open_ok(tmp.path);
    put_ok(*store, "f", fv_of("one"));
  }
  const std::string fdir = tmp.path + "/functions/f";
  REQUIRE(mkfifo((fdir + "/2.json").c_str(), 0600) == 0);
  write_text(fdir + "/18446744073709551615.json", "garbage");
  auto store = open_ok(tmp.path);  // an open of the FIFO would wait for a writer
  CHECK(store->versions("f") == std::vector<uint64_t>{1});
  FunctionVersion two = fv_of("two");
  auto r = store->put("f", two);
  REQUIRE_FALSE(r);
  CHECK(r.error().message().find("no version number is left") != std::string::npos);
  CHECK(latest_of(*store, "f")->source == "one");
  // Other functions deploy as before.
  CHECK(put_ok(*store, "g", fv_of("g1")).version == 1);
}

TEST_CASE("registry: a function with only unloadable files can be deleted, and deployed again") {
  TempDir tmp("registry");
  { auto store = open_ok(tmp.path); }
  const std::string fdir = tmp.path + "/functions/f";
  fs::create_directories(fdir);
  write_text(fdir + "/18446744073709551615.json", "garbage");
  auto store = open_ok(tmp.path);
  CHECK_FALSE(store->put("f", fv_of("one")));  // no number left
  auto gone = store->remove("f");
  REQUIRE(gone);
  CHECK(gone.value() > 0);
  CHECK_FALSE(fs::exists(fdir + "/18446744073709551615.json"));
  CHECK(put_ok(*store, "f", fv_of("one")).version == 1);
}

TEST_CASE("registry: the latest sources kept in memory stay within the cache's bytes") {
  TempDir tmp("registry-cache");
  auto r = open_file_store(tmp.path, 3000);
  REQUIRE(r);
  FunctionStore& s = *r.value();
  auto source = [](int i) { return "# " + std::to_string(i) + "\n" + std::string(1000, 'x'); };
  for (int i = 0; i < 10; i++) put_ok(s, "f" + std::to_string(i), fv_of(source(i)));
  // Three fit (each ~1006 bytes would make four over 3000): the rest were
  // dropped, least recently used first.
  CHECK(s.cached_source_bytes() <= 3000);
  CHECK(s.cached_source_bytes() >= 2000);
  // Each is still served whole, read from disk when not in memory.
  for (int i = 0; i < 10; i++) {
    auto fv = latest_of(s, "f" + std::to_string(i));
    REQUIRE(fv);
    CHECK(fv->source == source(i));
    CHECK(s.cached_source_bytes() <= 3000);
  }
  // A redeploy replaces its cached source rather than adding to it, and a
  // remove drops it.
  put_ok(s, "f9", fv_of(source(99)));
  CHECK(latest_of(s, "f9")->source == source(99));
  CHECK(s.cached_source_bytes() <= 3000);
  for (int i = 0; i < 10; i++) REQUIRE(s.remove("f" + std::to_string(i)));
  CHECK(s.cached_source_bytes() == 0);
  // Least recently used first out: with a, b, c cached and a asked for, d
  // pushes out b (a FIFO would drop a). Bytes tell which: each name's
  // source has a size of its own.
  put_ok(s, "a", fv_of(std::string(900, 'a')));
  put_ok(s, "b", fv_of(std::string(901, 'b')));
  put_ok(s, "c", fv_of(std::string(902, 'c')));
  CHECK(s.cached_source_bytes() == 900 + 901 + 902);
  CHECK(latest_of(s, "a")->source.size() == 900);
  put_ok(s, "d", fv_of(std::string(903, 'd')));
  CHECK(s.cached_source_bytes() == 900 + 902 + 903);
  for (const char* n : {"a", "b", "c", "d"}) REQUIRE(s.remove(n));
  CHECK(s.cached_source_bytes() == 0);
  // One source over the whole limit is still kept: it is about to be loaded.
  put_ok(s, "big", fv_of(std::string(5000, 'y')));
  CHECK(s.cached_source_bytes() == 5000);
  CHECK(latest_of(s, "big")->source.size() == 5000);
}

TEST_CASE("registry: keep_versions deletes the oldest versions, never the latest") {
  TempDir tmp("registry-keep");
  const std::string fdir = tmp.path + "/functions/f";
  auto files = [&] {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(fdir)) out.insert(e.path().filename().string());
    return out;
  };
  {
    auto r = open_file_store(tmp.path, nsbox::kSourceCacheBytes, 3);
    REQUIRE(r);
    FunctionStore& s = *r.value();
    for (int i = 1; i <= 5; i++) put_ok(s, "f", fv_of("v = " + std::to_string(i)));
    put_ok(s, "g", fv_of("g = 1"));
    CHECK(s.versions("f") == std::vector<uint64_t>{3, 4, 5});
    CHECK(files() == std::set<std::string>{"3.json", "4.json", "5.json"});
    // A pruned version reads as deleted, not as damage.
    CHECK_FALSE(s.get("f", 2));
    REQUIRE(s.get("f", 3));
    CHECK(s.get("f", 3)->source == "v = 3");
    CHECK(latest_of(s, "f")->source == "v = 5");
    CHECK(s.versions("g") == std::vector<uint64_t>{1});
    // Numbers keep rising past the pruned ones.
    CHECK(put_ok(s, "f", fv_of("v = 6")).version == 6);
    CHECK(files() == std::set<std::string>{"4.json", "5.json", "6.json"});
  }
  {
    // 0 keeps every version, also those a smaller setting would drop.
    auto all = open_ok(tmp.path);
    CHECK(all->versions("f") == std::vector<uint64_t>{4, 5, 6});
    put_ok(*all, "f", fv_of("v = 7"));
    CHECK(all->versions("f").size() == 4);
  }
  // A lower setting applies at open: the latest is what stays.
  auto r = open_file_store(tmp.path, nsbox::kSourceCacheBytes, 1);
  REQUIRE(r);
  CHECK(r.value()->versions("f") == std::vector<uint64_t>{7});
  CHECK(files() == std::set<std::string>{"7.json"});
  CHECK(latest_of(*r.value(), "f")->source == "v = 7");
}

TEST_CASE("registry: a function directory with no version goes, at open and when its put fails") {
  TempDir tmp("registry");
  { open_ok(tmp.path); }
  // Left by a crash: an empty directory, and one holding only a put's
  // leftover; a stray file keeps its directory (logged, not guessed at).
  const std::string fns = tmp.path + "/functions";
  fs::create_directories(fns + "/empty");
  fs::create_directories(fns + "/torn");
  write_text(fns + "/torn/.1.json.tmp-1-1", "{\"partial\":");
  fs::create_directories(fns + "/stray");
  write_text(fns + "/stray/notes.txt", "mine");
  {
    auto store = open_ok(tmp.path);
    CHECK_FALSE(fs::exists(fns + "/empty"));
    CHECK_FALSE(fs::exists(fns + "/torn"));
    CHECK(fs::exists(fns + "/stray/notes.txt"));
    CHECK(store->list().empty());
  }
  // A put that fails after making its directory (here the file size limit:
  // EFBIG on its write) takes the directory away again. In a child, which
  // may lower its own limit.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    auto store = open_file_store(tmp.path);
    if (!store) _exit(10);
    struct rlimit small = {16, 16};
    if (setrlimit(RLIMIT_FSIZE, &small) != 0) _exit(11);
    auto put = store.value()->put("newone", fv_of(std::string(4096, '#')));
    if (put) _exit(12);
    _exit(fs::exists(fns + "/newone") ? 13 : 0);
  }
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
}
