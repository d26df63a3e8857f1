// The file-backed function store.
//
// Layout: <dir>/functions/<name>/<version>.json, one file per version: a JSON
// object holding the meta keys (meta_to_json) plus "source". Nothing else is
// persistent: the index is rebuilt from these files at open.
//
// put() writes <dir>/functions/<name>/.<version>.json.tmp-<pid>-<counter>
// (O_CREAT|O_EXCL, 0600), fsyncs it, renames it to <version>.json and fsyncs
// the function directory; a new function directory is made durable by
// fsyncing <dir>/functions first. rename(2) is atomic, so after a crash the
// version either exists whole or not at all; the directory fsyncs make the
// rename itself survive power loss (ext4/xfs do not promise that otherwise).
// Only then does the in-memory index change and put() return.
//
// remove() renames <dir>/functions/<name> to
// <dir>/functions/.deleted-<name>-<pid>-<counter>, fsyncs <dir>/functions and
// only then deletes the renamed tree (best effort): a crash in between leaves
// an invisible leftover, never a function with some of its versions missing.
//
// Retention: with keep_versions set, a put() that leaves a function more
// versions than that deletes its oldest, once the new one is durable (and
// open does the same). Only superseded versions go: never the latest, so
// never an acknowledged deploy that is still the one served. They leave the
// index before their file goes, so a reader sees a deleted version, not a
// damaged one; the unlink need not be durable (a pruned version that comes
// back after a crash is pruned again at the next open).
//
// A function whose directory another user may write (found at open) is not
// walked by a delete: it is renamed to .untrusted-<name>-<pid>-<counter> and
// left for an operator, whom each open's log reminds.
//
// open scans the tree: *.tmp-* files and .deleted-* trees are crash leftovers
// and are deleted; each <N>.json is parsed and checked (name and version
// against its path, sha256 and size against its source). A file that fails
// is skipped with a warning and kept for inspection; its version number is
// never reused, so a later put() cannot overwrite it.
//
// One process at a time: open takes an exclusive flock on <dir>/functions.lock,
// held while the store is open, since two daemons numbering versions in one
// directory would each acknowledge the same version; renames use
// RENAME_NOREPLACE as well, so an existing version is never replaced.
//
// Concurrency: write_mu_ serialises put() and remove() (version numbering and
// renames); mu_ guards the index and is never held across disk I/O, so the
// request path (latest/get) does not wait behind a put's fsyncs. Sources are
// read from disk on demand; the latest source of each function is cached.
#include "gateway/registry.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>

#include "base/clock.hpp"
#include "base/digest.hpp"
#include "base/fd.hpp"
#include "base/files.hpp"
#include "base/log.hpp"
#include "policies/units.hpp"

namespace nsbox {

using nlohmann::json;

// ---------------------------------------------------------------- names ---

bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) return false;
  for (size_t i = 1; i < name.size(); ++i) {
    char c = name[i];
    if (!alnum(c) && c != '_' && c != '-') return false;
  }
  return true;
}

// ----------------------------------------------------------------- json ---

json meta_to_json(const FunctionMeta& m) {
  return json{{"name", m.name},
              {"version", m.version},
              {"handler", m.handler},
              {"policy", m.policy},
              {"memory_mb", m.memory_mb},
              {"timeout_ms", m.timeout_ms},
              {"template", m.use_template},
              {"created_unix_ms", m.created_unix_ms},
              {"sha256", m.sha256},
              {"source_bytes", m.source_bytes}};
}

namespace {

// JSON-escaped source can be up to 6x its 1 MiB bound (\u00XX); anything
// beyond that is not a file put() wrote.
constexpr size_t kMaxVersionFileBytes = 8 * kMaxSourceBytes;

// Tags temporary and graveyard names so two stores in one process (tests,
// or a future migration) never pick the same name.
std::atomic<uint64_t> g_counter{0};

std::string unique_suffix() {
  // The clock too: names made by an earlier run with the same PID (a
  // container's PID 1) may still be there.
  return std::to_string(::getpid()) + "-" + std::to_string(++g_counter) + "-" +
         std::to_string(monotonic_ns() % 1000000000);
}

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// "<N>.json" with N a decimal without leading zeros, N >= 1.
std::optional<uint64_t> parse_version_filename(const std::string& f) {
  constexpr std::string_view kExt = ".json";
  if (f.size() <= kExt.size() || f.compare(f.size() - kExt.size(), kExt.size(), kExt) != 0)
    return std::nullopt;
  const char* b = f.data();
  const char* e = f.data() + f.size() - kExt.size();
  if (*b < '1' || *b > '9') return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || ptr != e) return std::nullopt;
  return v;
}

std::string version_filename(uint64_t v) {
  return std::to_string(v) + ".json";
}

// Strict reading of a version file: every key present with its type, so a
// hand-edited or half-migrated file is refused rather than served with
// defaults.
FunctionVersion version_from_json(const json& j) {
  if (!j.is_object()) throw std::runtime_error("not a JSON object");
  auto field = [&](const char* key) -> const json& {
    auto it = j.find(key);
    if (it == j.end()) throw std::runtime_error(std::string("missing \"") + key + "\"");
    return *it;
  };
  auto str = [&](const char* key) {
    const json& v = field(key);
    if (!v.is_string()) throw std::runtime_error(std::string("\"") + key + "\" is not a string");
    return v.get<std::string>();
  };
  auto u64 = [&](const char* key) {
    const json& v = field(key);
    if (!v.is_number_unsigned())
      throw std::runtime_error(std::string("\"") + key + "\" is not an unsigned integer");
    return v.get<uint64_t>();
  };
  FunctionVersion fv;
  fv.meta.name = str("name");
  fv.meta.version = u64("version");
  fv.meta.handler = str("handler");
  fv.meta.policy = str("policy");
  fv.meta.memory_mb = u64("memory_mb");
  fv.meta.timeout_ms = u64("timeout_ms");
  // As a deploy bounds them (0: the policy's): a file written otherwise
  // would overflow the shifts and deadlines they become (2**44 MiB is 0
  // bytes; a timeout of centuries never fires).
  if (fv.meta.memory_mb != 0 && (fv.meta.memory_mb < 16 || fv.meta.memory_mb > kMaxMemoryMb))
    throw std::runtime_error("\"memory_mb\" is " + std::to_string(fv.meta.memory_mb) +
                             ", outside 16.." + std::to_string(kMaxMemoryMb) +
                             " (0: the policy's)");
  if (fv.meta.timeout_ms > kMaxFunctionTimeoutMs)
    throw std::runtime_error("\"timeout_ms\" is " + std::to_string(fv.meta.timeout_ms) +
                             ", above 15 minutes");
  // Absent from the files of stores written before templates existed.
  if (auto t = j.find("template"); t != j.end()) {
    if (!t->is_boolean()) throw std::runtime_error("\"template\" is not a boolean");
    fv.meta.use_template = t->get<bool>();
  }
  const json& created = field("created_unix_ms");
  if (!created.is_number_integer())
    throw std::runtime_error("\"created_unix_ms\" is not an integer");
  fv.meta.created_unix_ms = created.get<int64_t>();
  fv.meta.sha256 = str("sha256");
  fv.meta.source_bytes = u64("source_bytes");
  fv.source = str("source");
  return fv;
}

// ------------------------------------------------------------- file I/O ---

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<std::string> read_file(const std::string& path) {
  // O_NOFOLLOW: the store only ever writes regular files; a symlink in it
  // was planted and must not make us serve an arbitrary host file.
  // O_NONBLOCK: a FIFO planted in the store would block the open until a
  // writer came, and the daemon with it; it is refused below instead.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) return sys_error("open", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return sys_error("fstat", path);
  if (!S_ISREG(st.st_mode)) return Error{0, "read", path, "not a regular file"};
  // put() writes 0600 files as this user; one that another user owns or may
  // write was not written by this daemon, whatever its sha256 says.
  if (st.st_uid != ::geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return Error{0, "read", path,
                 "belongs to uid " + std::to_string(st.st_uid) + " with mode " +
                     mode_octal(st.st_mode) + ", so another user may have written it"};
  if (static_cast<uint64_t>(st.st_size) > kMaxVersionFileBytes)
    return Error{0, "read", path, "larger than any version file the store writes"};
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", path);
    }
    if (n == 0) break;  // shrank under us: parse what is there, the checks decide
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

// Writes a new file that is durable before anyone can see it under its
// final name; the temporary is unlinked on any failure.
Status write_file_durably(const std::string& tmp, std::string_view data) {
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return sys_error("open", tmp);
  Status s = write_all(fd.get(), data, tmp);
  if (s && ::fsync(fd.get()) != 0) s = sys_error("fsync", tmp);
  // close() can report a deferred write error (NFS): it counts.
  if (s && ::close(fd.release()) != 0) s = sys_error("close", tmp);
  if (!s) ::unlink(tmp.c_str());
  return s;
}

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return sys_error("opendir", dir);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      names.emplace_back(e->d_name);
    errno = 0;
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return sys_error_n(err, "readdir", dir);
  return names;
}

// Best effort: open() deletes what is left of a grave at the next start.
void delete_tree(const std::string& path) {
  if (Status s = remove_tree(path); !s)
    LOG_WARN("could not delete: %s", s.error().message().c_str());
}

// Reads and checks one version file; the checks make a torn, hand-edited or
// misplaced file an error instead of a served function.
Result<FunctionVersion> load_version_file(const std::string& path, const std::string& name,
                                          uint64_t version) {
  std::string text = TRY(read_file(path));
  FunctionVersion fv;
  try {
    // One flat object of a dozen keys: anything nested, or many more keys,
    // is refused as it is read, before it costs what 8 MiB of brackets
    // would (hundreds of MB, built and freed recursively).
    int keys = 0;
    json j = json::parse(text, [&](int depth, json::parse_event_t event, json&) {
      if ((event == json::parse_event_t::object_start ||
           event == json::parse_event_t::array_start) &&
          depth > 0)
        throw std::runtime_error("nested deeper than a version file's one object");
      if (event == json::parse_event_t::key && ++keys > 64)
        throw std::runtime_error("more keys than a version file holds");
      return true;
    });
    fv = version_from_json(j);
  } catch (const std::exception& e) {
    return Error{0, "load", path, e.what()};
  }
  if (fv.meta.name != name)
    return Error{0, "load", path, "its name \"" + fv.meta.name + "\" disagrees with its path"};
  if (fv.meta.version != version)
    return Error{0, "load", path,
                 "its version " + std::to_string(fv.meta.version) + " disagrees with its path"};
  if (fv.meta.source_bytes != fv.source.size() || fv.meta.sha256 != sha256_hex(fv.source))
    return Error{0, "load", path, "its source does not match its sha256 or size"};
  return fv;
}

// A directory of the store: this process's user's, and writable by no one
// else. What it names, as the store uses it: functions/ may be a link to
// another disk (a function directory that is one is refused before this).
Status check_ours(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return sys_error("stat", dir);
  if (st.st_uid == ::geteuid() && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0) return {};
  return make_error("function store",
                    dir + " belongs to uid " + std::to_string(st.st_uid) + " with mode " +
                        mode_octal(st.st_mode) +
                        ", so another user may have put code there: check what it holds, then "
                        "chown " +
                        std::to_string(::geteuid()) +
                        " and chmod go-w it (or move it out of "
                        "the store), and start again");
}

// ---------------------------------------------------------------- store ---

class FileStore final : public FunctionStore {
 public:
  FileStore(std::string root, size_t source_cache_bytes, uint64_t keep_versions)
      : root_(std::move(root)),
        functions_(root_ + "/functions"),
        source_cache_bytes_(source_cache_bytes),
        keep_versions_(keep_versions) {}

  Status load();

  Result<FunctionMeta> put(const std::string& name, const FunctionVersion& fv) override;
  std::optional<FunctionMeta> latest_meta(const std::string& name) override;
  std::optional<FunctionVersion> get(const std::string& name, uint64_t version) override;
  std::vector<FunctionMeta> list() override;
  std::vector<uint64_t> versions(const std::string& name) override;
  Result<uint64_t> remove(const std::string& name) override;
  size_t cached_source_bytes() override {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_bytes_;
  }

 private:
  struct Entry {
    FunctionMeta latest;
    std::map<uint64_t, uint64_t> versions;  // version -> its deploy number
    // Source of `latest`, which cold starts load. Null until put() or the
    // first get() of it, and again once the cache's least recently used.
    std::shared_ptr<const std::string> latest_source;
    std::list<std::string>::iterator lru;  // its place in lru_, while cached
  };

  // The latest sources are kept within source_cache_bytes_ (least recently
  // used first out; they are read from disk again when asked for): up to
  // 1 MiB a function would otherwise stay in the daemon for every function
  // ever deployed. Under mu_.
  void cache_source(const std::string& name, Entry& entry,
                    std::shared_ptr<const std::string> source);
  void uncache_source(Entry& entry);

  std::string function_dir(const std::string& name) const { return functions_ + "/" + name; }
  std::string version_path(const std::string& name, uint64_t v) const {
    return function_dir(name) + "/" + version_filename(v);
  }
  Status load_function_dir(const std::string& name);
  // Deletes the versions of name beyond the newest keep_versions_. Under
  // write_mu_ (or in load(), before anyone else has the store).
  void prune(const std::string& name);
  std::optional<FunctionVersion> read_version(const std::string& name, uint64_t version);
  // What latest_meta() says of a name whose every version file failed to load.
  static FunctionMeta unreadable_meta(const std::string& name, uint64_t version);
  // ... and of one whose directory failed check_ours().
  static FunctionMeta untrusted_meta(const std::string& name);

  const std::string root_;
  const std::string functions_;
  UniqueFd lock_;                       // functions.lock, flocked while open
  std::mutex write_mu_;                 // serialises put() and remove(): numbering and renames
  uint64_t last_deploy_ = 0;            // the deploy sequence (FunctionMeta::deploy); under mu_
  std::mutex mu_;                       // guards index_ and unloadable_; never held across disk I/O
  std::map<std::string, Entry> index_;  // ordered: list() is sorted by name
  // Highest version per name whose file exists but did not load: never
  // reused, so put() cannot overwrite evidence kept for inspection.
  std::map<std::string, uint64_t> unloadable_;
  // Names whose directory another user may write (found at open): neither
  // loaded nor written to, only deleted. Under mu_.
  std::set<std::string> untrusted_;
  // Names whose functions/ entry a failed remove() put back without making
  // that durable: their next put syncs functions/ (guarded by mu_).
  std::set<std::string> parent_unsynced_;
  const size_t source_cache_bytes_;
  const uint64_t keep_versions_;  // 0: every version
  std::list<std::string> lru_;    // names with a cached source, most recent first
  size_t cached_bytes_ = 0;
};

void FileStore::uncache_source(Entry& entry) {
  if (!entry.latest_source) return;
  cached_bytes_ -= entry.latest_source->size();
  lru_.erase(entry.lru);
  entry.latest_source.reset();
}

void FileStore::cache_source(const std::string& name, Entry& entry,
                             std::shared_ptr<const std::string> source) {
  uncache_source(entry);
  cached_bytes_ += source->size();
  entry.latest_source = std::move(source);
  lru_.push_front(name);
  entry.lru = lru_.begin();
  // The one just cached stays even when it alone is over the limit: it is
  // about to be loaded.
  while (cached_bytes_ > source_cache_bytes_ && lru_.size() > 1)
    uncache_source(index_.at(lru_.back()));
}

Status FileStore::load() {
  TRY(mkdir_p(root_, 0700));
  const std::string lock_path = root_ + "/functions.lock";
  lock_.reset(
      ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
  if (!lock_.valid()) {
    Error e = sys_error("open", lock_path);
    // Made by nsbox as a plain file: anything else was put there.
    if (e.err == ELOOP || e.err == ENXIO || e.err == EISDIR)
      e.detail = "it must be a regular file; remove it and start again";
    return e;
  }
  struct stat lock_st;
  if (::fstat(lock_.get(), &lock_st) != 0) return sys_error("fstat", lock_path);
  if (!S_ISREG(lock_st.st_mode))
    return make_error("function store",
                      lock_path + " is not a regular file; remove it and start again");
  if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return sys_error("flock", lock_path);
    return make_error("function store",
                      root_ + " is in use by another nsbox serve (it holds " + lock_path +
                          "); stop that one, or give this one another --state-dir");
  }
  if (auto made = mkdir_p(functions_, 0700); !made) {
    Error e = made.error();
    if (e.err == ENOENT || e.err == ENOTDIR || e.err == EEXIST)
      e.detail = functions_ + " must be a directory (a dangling link or a file is there?); " +
                 "move it aside and start again";
    return e;
  }
  // Every open, not only the one that made it: a crash before this fsync
  // would leave functions/ in place with its entry never made durable. The
  // same holds for the state directory's own entry and those above it
  // (made by this open, or by `nsbox serve` just before): each is synced.
  TRY(fsync_dir(root_));
  // And functions/ itself: a remove() whose rename back failed, before a
  // crash, must not come back once later deploys are acknowledged.
  TRY(fsync_dir(functions_));
  struct stat root_st;
  if (::stat(root_.c_str(), &root_st) != 0) return sys_error("stat", root_);
  for (std::string up = root_; up.size() > 1;) {
    size_t slash = up.find_last_of('/');
    if (slash == std::string::npos) break;
    up = slash == 0 ? "/" : up.substr(0, slash);
    UniqueFd fd(::open(up.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st;
    // Not ours to read (rootless), or another filesystem (a mount point):
    // what is above was not made for this store.
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_dev != root_st.st_dev) break;
    // A filesystem without directory fsync (EINVAL: squashfs, vboxsf, ...)
    // keeps no promise either way; only an I/O error is one broken.
    if (::fsync(fd.get()) != 0 && errno != EINVAL && errno != EROFS) return sys_error("fsync", up);
  }
  // Who could have written the code it serves: only this daemon's user.
  // A functions/ or function directory another user may write (a chmod
  // 777 by mistake) could hold their code under a correct sha256; the
  // daemon says so and does not start rather than serve it.
  TRY(check_ours(functions_));
  // A functions/ linked to another disk: the directories above what it
  // names must be as private as the state dir's, or another user could
  // rename the store away under us and put theirs in its place.
  if (struct stat lst; ::lstat(functions_.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    auto target = resolve_trusted(functions_);
    if (!target) return make_error("function store", target.error().message());
    // A sticky parent (/tmp) as for the state dir: the target itself was
    // checked to be ours just above, and others cannot rename it there.
    if (auto above = check_private_ancestors(target.value(), /*sticky_last_ok=*/true); !above)
      return make_error("function store", functions_ + " is a link to " + target.value() + ": " +
                                              above.error().message());
  }
  std::vector<std::string> entries = TRY(list_dir(functions_));
  for (const std::string& e : entries) {
    const std::string path = functions_ + "/" + e;
    if (starts_with(e, ".deleted-")) {
      // The rename of a remove() was durable; only the cleanup was cut short.
      LOG_INFO("deleting %s, left by an interrupted remove", path.c_str());
      delete_tree(path);
      continue;
    }
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return sys_error("lstat", path);
    if (starts_with(e, ".untrusted-")) {
      LOG_WARN(
          "%s was a deleted function's directory that another user could write: check what "
          "it holds, then delete it by hand",
          path.c_str());
      continue;
    }
    if (!valid_function_name(e) || !S_ISDIR(st.st_mode)) {
      LOG_WARN("ignoring %s: not a function directory", path.c_str());
      continue;
    }
    if (Status ours = check_ours(path); !ours) {
      // One function's directory is not the whole store: that function is
      // not served (and says so), the others are.
      LOG_ERROR("%s; until then %s is not served", ours.error().message().c_str(), e.c_str());
      untrusted_.insert(e);
      continue;
    }
    if (Status loaded = load_function_dir(e); !loaded)
      return make_error("function store", loaded.error().message() +
                                              "; move it out of the store (or fix its owner and "
                                              "mode) and start again");
  }
  // Numbered once all are loaded, each function's in version order: a
  // directory lists its files in no particular order.
  for (auto& [name, entry] : index_) {
    for (auto& [version, deploy] : entry.versions) deploy = ++last_deploy_;
    entry.latest.deploy = entry.versions.at(entry.latest.version);
  }
  for (const auto& [name, entry] : index_) prune(name);
  return {};
}

void FileStore::prune(const std::string& name) {
  if (keep_versions_ == 0) return;
  std::vector<uint64_t> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(name);
    if (it == index_.end()) return;
    auto& versions = it->second.versions;
    while (versions.size() > keep_versions_) {
      // The latest is the map's last, so never among these.
      old.push_back(versions.begin()->first);
      versions.erase(versions.begin());
    }
  }
  for (uint64_t v : old) {
    const std::string path = version_path(name, v);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      LOG_WARN("could not delete %s (beyond keep_versions = %llu): %s", path.c_str(),
               static_cast<unsigned long long>(keep_versions_), std::strerror(errno));
  }
}

Status FileStore::load_function_dir(const std::string& name) {
  const std::string dir = function_dir(name);
  std::string newest_unloadable;
  std::vector<std::string> files = TRY(list_dir(dir));
  for (const std::string& f : files) {
    const std::string path = dir + "/" + f;
    if (f[0] == '.' && f.find(".tmp-") != std::string::npos) {
      // A put() that never reached its rename: never acknowledged, so no
      // client was told this version exists.
      LOG_INFO("deleting %s, left by an interrupted put", path.c_str());
      if (::unlink(path.c_str()) != 0)
        LOG_WARN("could not delete %s: %s", path.c_str(), std::strerror(errno));
      continue;
    }
    std::optional<uint64_t> v = parse_version_filename(f);
    if (!v) {
      LOG_WARN("ignoring %s: not a version file", path.c_str());
      continue;
    }
    auto fv = load_version_file(path, name, *v);
    if (!fv) {
      LOG_WARN("skipping %s (kept on disk, never served)", fv.error().message().c_str());
      uint64_t& hi = unloadable_[name];
      if (*v >= hi) {
        hi = *v;
        newest_unloadable = fv.error().message();
      }
      continue;
    }
    Entry& entry = index_[name];
    entry.versions[*v] = 0;  // numbered by load()
    if (*v >= entry.latest.version) entry.latest = std::move(fv.value().meta);
  }
  auto it = index_.find(name);
  auto bad = unloadable_.find(name);
  if (it == index_.end() && bad != unloadable_.end())
    LOG_ERROR("%s: %s", unreadable_meta(name, bad->second).damaged.c_str(),
              newest_unloadable.c_str());
  if (it == index_.end() && bad == unloadable_.end()) {
    // Nothing in it (a put that failed before its rename, or one whose
    // leftover was deleted above): no function, and nothing the API could
    // delete, so it goes. A non-empty one (a stray file) stays, logged.
    if (::rmdir(dir.c_str()) == 0)
      LOG_INFO("deleted %s: no version in it", dir.c_str());
    else if (errno != ENOTEMPTY && errno != EEXIST)
      LOG_WARN("could not delete %s, which holds no version: %s", dir.c_str(),
               std::strerror(errno));
    return {};
  }
  if (it != index_.end() && bad != unloadable_.end() && bad->second > it->second.latest.version) {
    // Said to whoever invokes it, so without the host's paths; the log has
    // the file and the error.
    it->second.latest.damaged =
        "version " + std::to_string(bad->second) + " of " + name +
        " cannot be read from the function store (the daemon's log says which file and why); " +
        "the older version " + std::to_string(it->second.latest.version) +
        " is not served in its place: deploy " + name + " again, or delete it";
    LOG_ERROR("%s: %s", it->second.latest.damaged.c_str(), newest_unloadable.c_str());
  }
  return {};
}

Result<FunctionMeta> FileStore::put(const std::string& name, const FunctionVersion& fv) {
  if (!valid_function_name(name))
    return make_error("put", "invalid function name \"" + name +
                                 "\": use 1-63 of a-z 0-9 _ - starting with a letter or digit");
  if (fv.source.size() > kMaxSourceBytes)
    return make_error("put", name + ": the source is " + std::to_string(fv.source.size()) +
                                 " bytes, more than the limit of 1 MiB");
  FunctionMeta m;
  m.name = name;
  m.handler = fv.meta.handler;
  m.policy = fv.meta.policy;
  m.memory_mb = fv.meta.memory_mb;
  m.timeout_ms = fv.meta.timeout_ms;
  m.use_template = fv.meta.use_template;
  m.created_unix_ms = wall_ms();
  m.sha256 = sha256_hex(fv.source);
  m.source_bytes = fv.source.size();

  std::lock_guard<std::mutex> write_lock(write_mu_);
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (untrusted_.count(name))
      return make_error("put", function_dir(name) +
                                   " may be written by another user (see the log at start): "
                                   "check what it holds and fix its owner and mode, then restart "
                                   "the daemon, or delete " +
                                   name + " before deploying it again");
    uint64_t last = 0;
    if (auto it = index_.find(name); it != index_.end()) {
      known = true;
      last = it->second.versions.rbegin()->first;
    }
    if (auto it = unloadable_.find(name); it != unloadable_.end())
      last = std::max(last, it->second);
    // Only a planted file can hold the last number; wrapping to 0 would
    // acknowledge versions that never load again (and overwrite each other).
    if (last == std::numeric_limits<uint64_t>::max())
      return make_error("put", name + ": no version number is left after " + std::to_string(last) +
                                   " (a file in " + function_dir(name) +
                                   " claims it); delete the function or that file");
    m.version = last + 1;
  }

  std::string text;
  try {
    json j = meta_to_json(m);
    j["source"] = fv.source;
    text = j.dump();
  } catch (const std::exception& e) {
    // dump() refuses invalid UTF-8 in the source, handler or policy.
    return make_error("put", name + ": cannot serialise: " + e.what());
  }

  const std::string dir = function_dir(name);
  bool created_dir = false;
  if (::mkdir(dir.c_str(), 0700) == 0)
    created_dir = true;
  else if (errno != EEXIST)
    return sys_error("mkdir", dir);
  // A put that fails leaves no directory it made: an empty one would name
  // a function with no version, which neither the API nor a restart shows.
  struct RemoveMadeDir {
    const std::string& dir;
    bool armed;
    ~RemoveMadeDir() {
      if (armed) ::rmdir(dir.c_str());
    }
  } remove_made_dir{dir, created_dir};
  // Only a directory of its own: a symlink would be followed here and
  // skipped by the next open, losing what this put acknowledges.
  struct stat dst;
  if (::lstat(dir.c_str(), &dst) != 0) return sys_error("lstat", dir);
  if (!S_ISDIR(dst.st_mode))
    return make_error("put", dir + " is not a directory (a symlink?); move it out of the store");
  // A directory left by a crash may exist without its entry being durable:
  // sync the parent for any name the index does not know yet.
  bool parent_unsynced;
  {
    std::lock_guard<std::mutex> lock(mu_);
    parent_unsynced = parent_unsynced_.count(name) != 0;
  }
  if (created_dir || !known || parent_unsynced) TRY(fsync_dir(functions_));
  if (parent_unsynced) {
    std::lock_guard<std::mutex> lock(mu_);
    parent_unsynced_.erase(name);
  }

  const std::string final_path = version_path(name, m.version);
  const std::string tmp = dir + "/." + version_filename(m.version) + ".tmp-" + unique_suffix();
  TRY(write_file_durably(tmp, text));
  int renamed = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_NOREPLACE);
  if (renamed != 0 && errno == EINVAL)  // a filesystem without the flag (NFS)
    renamed = ::rename(tmp.c_str(), final_path.c_str());
  if (renamed != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    if (err == EEXIST) {
      // Put there since the store was opened, not by this daemon: never
      // served, and its number skipped, or every later deploy of the name
      // would fail on it the same way.
      std::lock_guard<std::mutex> lock(mu_);
      uint64_t& hi = unloadable_[name];
      hi = std::max(hi, m.version);
      return make_error("put", final_path +
                                   " exists but was not written by this daemon: it is not "
                                   "served and its number is skipped; move it out of the store "
                                   "and deploy again");
    }
    return sys_error_n(err, "rename", tmp + " -> " + final_path);
  }
  if (Status s = fsync_dir(dir); !s) {
    // Not acknowledged, so it must not come back after a restart either:
    // unlinked, and the unlink made durable. Where either fails the file
    // may still be there, now or after a crash; its number is not given to
    // another deploy (which would fail on it, or be shadowed by it).
    if (::unlink(final_path.c_str()) != 0 || !fsync_dir(dir)) {
      std::lock_guard<std::mutex> lock(mu_);
      uint64_t& hi = unloadable_[name];
      hi = std::max(hi, m.version);
    }
    return std::move(s).error();
  }

  remove_made_dir.armed = false;
  auto source = std::make_shared<const std::string>(fv.source);
  {
    std::lock_guard<std::mutex> lock(mu_);
    m.deploy = ++last_deploy_;
    Entry& entry = index_[name];
    entry.versions[m.version] = m.deploy;
    entry.latest = m;
    cache_source(name, entry, std::move(source));
  }
  prune(name);
  return m;
}

std::optional<FunctionVersion> FileStore::read_version(const std::string& name, uint64_t version) {
  auto fv = load_version_file(version_path(name, version), name, version);
  if (fv) return std::move(fv).value();
  // ENOENT is a concurrent remove(), not damage.
  if (fv.error().err != ENOENT) LOG_WARN("%s", fv.error().message().c_str());
  return std::nullopt;
}

FunctionMeta FileStore::unreadable_meta(const std::string& name, uint64_t version) {
  FunctionMeta m;
  m.name = name;
  m.version = version;
  // Said to whoever invokes it, so without the host's paths.
  m.damaged = "version " + std::to_string(version) + " of " + name +
              " cannot be read from the function store, nor any older one (the daemon's log " +
              "says which file and why): deploy " + name + " again, or delete it";
  return m;
}

FunctionMeta FileStore::untrusted_meta(const std::string& name) {
  FunctionMeta m;
  m.name = name;
  m.untrusted = true;
  m.damaged = "function " + name +
              " is not served: another user may write its directory in the function store, so "
              "it may hold their code (the daemon's log says which directory); an operator must "
              "check it, fix its owner and mode and restart the daemon, or delete " +
              name;
  return m;
}

std::optional<FunctionMeta> FileStore::latest_meta(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (untrusted_.count(name)) return untrusted_meta(name);
  auto it = index_.find(name);
  if (it != index_.end()) return it->second.latest;
  if (auto bad = unloadable_.find(name); bad != unloadable_.end())
    return unreadable_meta(name, bad->second);
  return std::nullopt;
}

std::optional<FunctionVersion> FileStore::get(const std::string& name, uint64_t version) {
  // The deploy number of the version asked for; a file read from disk does
  // not carry one, so it is taken from the index and checked again after.
  auto deploy_of = [&]() -> uint64_t {
    auto it = index_.find(name);
    if (it == index_.end()) return 0;
    auto v = it->second.versions.find(version);
    return v == it->second.versions.end() ? 0 : v->second;
  };
  uint64_t deploy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    deploy = deploy_of();
    if (deploy == 0) return std::nullopt;
    Entry& entry = index_.at(name);
    if (entry.latest.deploy == deploy && entry.latest_source) {
      lru_.splice(lru_.begin(), lru_, entry.lru);
      return FunctionVersion{entry.latest, *entry.latest_source};
    }
  }
  if (auto fv = read_version(name, version)) {
    std::lock_guard<std::mutex> lock(mu_);
    // Still the same deploy number: no remove() and put() reused the
    // version while we read, so the file is that deploy's.
    if (deploy_of() == deploy) {
      fv->meta.deploy = deploy;
      // The latest version's source is what cold starts load: keep it.
      Entry& entry = index_.at(name);
      if (!entry.latest_source && entry.latest.deploy == deploy)
        cache_source(name, entry, std::make_shared<const std::string>(fv->source));
      return fv;
    }
  }
  // A remove() may be between its rename and its index update, or a remove
  // and put() may have reused the version while we read (both hold
  // write_mu_ throughout): wait for them, then look again, so that callers
  // can tell "deleted" (nullopt here, and gone from the index) from
  // "listed but unreadable", and get the deploy number of what they read.
  std::lock_guard<std::mutex> write_lock(write_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    deploy = deploy_of();
    if (deploy == 0) return std::nullopt;
  }
  auto fv = read_version(name, version);
  if (fv) fv->meta.deploy = deploy;
  return fv;
}

std::vector<FunctionMeta> FileStore::list() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FunctionMeta> out;
  out.reserve(index_.size());
  for (const auto& [name, entry] : index_) out.push_back(entry.latest);
  bool unordered = false;
  for (const auto& [name, version] : unloadable_)
    if (!index_.count(name)) {
      out.push_back(unreadable_meta(name, version));
      unordered = true;
    }
  for (const std::string& name : untrusted_) {
    out.push_back(untrusted_meta(name));
    unordered = true;
  }
  if (unordered)
    std::sort(out.begin(), out.end(),
              [](const FunctionMeta& a, const FunctionMeta& b) { return a.name < b.name; });
  return out;
}

std::vector<uint64_t> FileStore::versions(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(name);
  if (it == index_.end()) return {};
  std::vector<uint64_t> out;
  for (const auto& [version, deploy] : it->second.versions) out.push_back(version);
  return out;
}

Result<uint64_t> FileStore::remove(const std::string& name) {
  if (!valid_function_name(name)) return uint64_t{0};
  std::unique_lock<std::mutex> write_lock(write_mu_);
  bool untrusted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A name with only unloadable files is deletable too: its top number
    // would otherwise block every later put, with no way out but the host.
    untrusted = untrusted_.count(name) != 0;
    if (!index_.count(name) && !unloadable_.count(name) && !untrusted) return uint64_t{0};
  }
  const std::string dir = function_dir(name);
  // A directory another user could write is not walked by root: what they
  // put in it (links, a third user's directory moved there, a mount, a tree
  // they keep growing through an fd held inside) would be root's to
  // delete. It is moved aside for an operator to inspect and delete, and
  // each start's log names it (it is no function directory).
  // .untrusted-* stay across restarts, where the same PID may come again
  // (a container's PID 1): a name of its own, never one already there.
  std::string grave;
  int renamed = -1;
  for (int attempt = 0; attempt < 8 && renamed != 0; attempt++) {
    grave = functions_ + (untrusted ? "/.untrusted-" : "/.deleted-") + name + "-" + unique_suffix();
    renamed = ::renameat2(AT_FDCWD, dir.c_str(), AT_FDCWD, grave.c_str(), RENAME_NOREPLACE);
    if (renamed != 0 && errno == EINVAL) renamed = ::rename(dir.c_str(), grave.c_str());  // NFS
    if (renamed != 0 && errno != EEXIST && errno != ENOTEMPTY) break;
  }
  if (renamed != 0) return sys_error("rename", dir + " -> " + grave);
  if (Status s = fsync_dir(functions_); !s) {
    // Not durable: put it back so memory, disk and the answer agree that the
    // function still exists. If even that fails it is gone from disk and
    // must go from the index too.
    if (::rename(grave.c_str(), dir.c_str()) != 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = index_.find(name); it != index_.end()) uncache_source(it->second);
      index_.erase(name);
      unloadable_.erase(name);
      untrusted_.erase(name);
    } else if (!fsync_dir(functions_)) {
      // The rename back is not durable either: after a power loss the disk
      // may hold the grave, which the next open deletes, with every version
      // put meanwhile. The next put of the name syncs functions/ first.
      std::lock_guard<std::mutex> lock(mu_);
      parent_unsynced_.insert(name);
    }
    return std::move(s).error();
  }
  // Only once the rename is durable (a rollback above must leave the
  // directory as the operator will find it): out of others' reach by path,
  // as every entry of functions/ is.
  if (untrusted) {
    if (UniqueFd g(::open(grave.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        !g.valid() || ::fchmod(g.get(), 0700) != 0)
      LOG_WARN("could not chmod 0700 %s: %s", grave.c_str(), std::strerror(errno));
  }
  uint64_t deploy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = index_.find(name); it != index_.end()) uncache_source(it->second);
    index_.erase(name);
    unloadable_.erase(name);
    untrusted_.erase(name);
    deploy = ++last_deploy_;
  }
  // Unlocked: a function of many versions takes a while to delete, and
  // nothing else uses the grave. Best effort: open() finishes the job
  // after a crash.
  write_lock.unlock();
  if (untrusted)
    LOG_WARN(
        "deleted function %s: its directory, which another user may have written, is now %s; "
        "check what it holds, then delete it by hand",
        name.c_str(), grave.c_str());
  else
    delete_tree(grave);
  return deploy;
}

}  // namespace

Result<std::unique_ptr<FunctionStore>> open_file_store(const std::string& dir,
                                                       size_t source_cache_bytes,
                                                       uint64_t keep_versions) {
  auto store = std::make_unique<FileStore>(dir, source_cache_bytes, keep_versions);
  TRY(store->load());
  return std::unique_ptr<FunctionStore>(std::move(store));
}

}  // namespace nsbox
