// The daemon's durable function registry: every deployed version of every
// function, with its source. The gateway only sees FunctionStore, because a
// later shared store for several nodes implements the same interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/limits.hpp"
#include "base/result.hpp"

namespace nsbox {

// ^[a-z0-9][a-z0-9_-]{0,62}$ — checked without std::regex (hand-written).
// The name becomes a directory name and a URL path segment, so it must never
// be able to say "..", "/" or anything a filesystem folds.
bool valid_function_name(const std::string& name);

struct FunctionMeta {
  std::string name;
  uint64_t version = 0;  // 1, 2, ... assigned by put()
  std::string handler = "handler";
  std::string policy = "default";
  uint64_t memory_mb = 0;   // 0 = the policy's
  uint64_t timeout_ms = 0;  // 0 = the policy's
  // Deployed with ?template=1: its sandboxes are forked from a function
  // template that has imported it once (docs/architecture.md §15).
  bool use_template = false;
  int64_t created_unix_ms = 0;  // set by put()
  std::string sha256;           // hex digest of the source, set by put()
  uint64_t source_bytes = 0;    // set by put()
  // Which deploy this is: the deploy identity every other part checks. Set
  // by the store: each put() and remove() of any function takes the next
  // number of one sequence, so a number never names two deploys while the
  // store is open (versions restart at 1 after a delete, so (name, version)
  // may) and a function's numbers order its deploys and its delete as the
  // store applied them. Not persisted: versions loaded at open get numbers
  // in version order, and nothing outside the process holds one.
  uint64_t deploy = 0;
  // Set at open when a newer version's file than this one cannot be read
  // (damaged on disk): what and where. Such a function is not served, this
  // older version included, until it is redeployed or deleted: serving it
  // would silently undo an acknowledged deploy. Not persisted.
  std::string damaged;
  // Set (with damaged) when another user may write the function's directory:
  // it cannot be deployed again, only deleted, until an operator fixes it.
  bool untrusted = false;
};

struct FunctionVersion {
  FunctionMeta meta;
  std::string source;  // the Python source
};

// Keys: name, version, handler, policy, memory_mb, timeout_ms, template,
// created_unix_ms, sha256, source_bytes (not deploy: it means nothing
// outside this process).
nlohmann::json meta_to_json(const FunctionMeta& meta);

// Kept behind an interface: a later issue adds a shared store for several nodes.
// All members are thread-safe and throw nothing.
class FunctionStore {
 public:
  virtual ~FunctionStore() = default;
  // Assigns the next version (latest+1, or 1 for a new or deleted-then-redeployed
  // name) and returns only once the version is durable (it survives kill -9 and
  // power loss). From fv.meta only handler, policy, memory_mb, timeout_ms and use_template are
  // used; name, version, created_unix_ms, sha256 and source_bytes are set here.
  virtual Result<FunctionMeta> put(const std::string& name, const FunctionVersion& fv) = 0;
  // The latest version's meta without its source: the request path, where a
  // warm sandbox already holds the code, must not copy up to 1 MiB of it. A
  // function none of whose version files loaded at open is still there, as
  // a meta with only its name, the newest version number and `damaged` set:
  // an acknowledged deploy is never reported as one that did not happen.
  virtual std::optional<FunctionMeta> latest_meta(const std::string& name) = 0;
  virtual std::optional<FunctionVersion> get(const std::string& name, uint64_t version) = 0;
  virtual std::vector<FunctionMeta> list() = 0;  // latest meta of each function, sorted by name
  virtual std::vector<uint64_t> versions(const std::string& name) = 0;  // ascending
  // Deletes the function and all its versions durably. Returns the delete's
  // number in the deploy sequence (see FunctionMeta::deploy), above every
  // deploy of the function; 0 = no such function.
  virtual Result<uint64_t> remove(const std::string& name) = 0;
  // Bytes of sources kept in memory (the latest versions' most recently used).
  virtual size_t cached_source_bytes() { return 0; }
};

// Opens (creating if needed, mode 0700) the file store rooted at dir; loads its
// index. Leftovers of a crashed put or remove are deleted; a version file that
// does not load is skipped with a warning and left on disk for inspection.
// source_cache_bytes bounds the latest sources kept in memory; the rest
// are read from disk when a cold start asks for them. keep_versions > 0
// keeps each function's newest keep_versions versions and deletes older
// ones (at open, and after each put); 0 keeps every version.
constexpr size_t kSourceCacheBytes = 64ull << 20;
Result<std::unique_ptr<FunctionStore>> open_file_store(
    const std::string& dir, size_t source_cache_bytes = kSourceCacheBytes,
    uint64_t keep_versions = 0);

}  // namespace nsbox
