// The program a sandbox's PID 1 execs once it has forked the runner
// (tools/nsbox_init.cpp). Until then PID 1 is a copy of whoever cloned it,
// the spawner or a template's whole interpreter, and stays one for the
// sandbox's life: its page tables and the pages it wrote (~140 kB per
// sandbox behind a template). nsbox-init is a small static program.
#pragma once

namespace nsbox {

// A sealed memfd holding nsbox-init (found next to this process's own
// program), mode 0111: a sandbox may execute it but not read it, and the
// kernel leaves a process that execs an unreadable program non-dumpable, so
// nobody inside can read PID 1's memory or ptrace it. Made on the first call
// and kept for the process's life; close-on-exec, so that only a sandbox's
// child_main carries it on (to a fixed fd, closed in the runner). -1 when it
// cannot be made (said once on stderr): PID 1 then stays in-process, as
// before.
int init_program_fd();

// For a process whose creator made the memfd already (a template, handed
// the spawner's with its options): init_program_fd() returns fd from now
// on (-1: none, and nothing said). False, and fd left to the caller, if
// init_program_fd() or an adoption came first.
bool init_program_adopt(int fd);

}  // namespace nsbox
