// Bytes for the structs that cross a process boundary without shared memory:
// the spawner's profiles (sent once, after the daemon read its config) and a
// template's clone requests. Plain length-prefixed fields; a decoder that
// runs out, or finds bytes left over, reports it and never reads past the end.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "sandbox/seccomp.hpp"
#include "sandbox/spec.hpp"

namespace nsbox {

class Encoder {
 public:
  template <class T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    buf_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(const std::string& v) {
    pod(static_cast<uint64_t>(v.size()));
    buf_ += v;
  }
  void strs(const std::vector<std::string>& v) {
    pod(static_cast<uint64_t>(v.size()));
    for (const auto& e : v) str(e);
  }
  const std::string& bytes() const { return buf_; }

 private:
  std::string buf_;
};

class Decoder {
 public:
  Decoder(const char* data, size_t len) : p_(data), left_(len) {}
  explicit Decoder(const std::string& b) : Decoder(b.data(), b.size()) {}
  template <class T>
  void pod(T* v) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!take(sizeof *v)) return;
    memcpy(v, p_ - sizeof *v, sizeof *v);
  }
  void str(std::string* v) {
    uint64_t n = 0;
    pod(&n);
    if (!ok_ || n > left_) {
      ok_ = false;
      return;
    }
    v->assign(p_, n);
    take(n);
  }
  void strs(std::vector<std::string>* v) {
    uint64_t n = 0;
    pod(&n);
    if (n > left_) ok_ = false;
    for (uint64_t i = 0; ok_ && i < n; i++) str(&v->emplace_back());
  }
  bool ok() const { return ok_ && left_ == 0; }
  bool more() const { return ok_ && left_ > 0; }
  size_t left() const { return left_; }
  void fail() { ok_ = false; }

 private:
  bool take(size_t n) {
    if (!ok_ || n > left_) return ok_ = false;
    p_ += n;
    left_ -= n;
    return true;
  }
  const char* p_;
  size_t left_;
  bool ok_ = true;
};

void encode_spec(Encoder& e, const SandboxSpec& s);
void decode_spec(Decoder& d, SandboxSpec* s);
void encode_bpf(Encoder& e, const SeccompProgram& p);
void decode_bpf(Decoder& d, SeccompProgram* p);

}  // namespace nsbox
