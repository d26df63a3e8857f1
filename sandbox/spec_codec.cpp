#include "sandbox/spec_codec.hpp"

namespace nsbox {

// A field added to these structs must be added to the codec below too.
// (x86_64 and aarch64 sizes, libstdc++.)
static_assert(sizeof(SandboxSpec) == 352 && sizeof(Limits) == 48 && sizeof(IdMap) == 24,
              "SandboxSpec changed: update encode_spec/decode_spec");

void encode_spec(Encoder& e, const SandboxSpec& s) {
  e.str(s.id);
  e.str(s.rootfs);
  e.str(s.code_path);
  e.pod(s.code_dev);
  e.pod(s.code_ino);
  e.str(s.code_mount);
  e.str(s.stage_dir);
  e.str(s.hostname);
  e.pod(s.limits);
  e.pod(s.network);
  e.pod(s.ids);
  e.pod(s.use_cgroups);
  e.pod(s.layers);
  e.strs(s.argv);
  e.strs(s.env);
  e.pod(s.stderr_fd);
}

void decode_spec(Decoder& d, SandboxSpec* s) {
  d.str(&s->id);
  d.str(&s->rootfs);
  d.str(&s->code_path);
  d.pod(&s->code_dev);
  d.pod(&s->code_ino);
  d.str(&s->code_mount);
  d.str(&s->stage_dir);
  d.str(&s->hostname);
  d.pod(&s->limits);
  d.pod(&s->network);
  d.pod(&s->ids);
  d.pod(&s->use_cgroups);
  d.pod(&s->layers);
  d.strs(&s->argv);
  d.strs(&s->env);
  d.pod(&s->stderr_fd);
}

void encode_bpf(Encoder& e, const SeccompProgram& p) {
  e.pod(static_cast<uint64_t>(p.insns.size()));
  for (const auto& insn : p.insns) e.pod(insn);
}

void decode_bpf(Decoder& d, SeccompProgram* p) {
  uint64_t n = 0;
  d.pod(&n);
  // BPF_MAXINSNS; more cannot be loaded anyway, and a bogus count must not
  // allocate.
  if (n > 4096 || n * sizeof(sock_filter) > d.left()) return d.fail();
  p->insns.resize(n);
  for (auto& insn : p->insns) d.pod(&insn);
}

}  // namespace nsbox
