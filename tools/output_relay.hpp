// Carries what a function prints (its fds 1 and 2, one pipe) to a fd of
// ours, so that the function never holds the caller's terminal: with the
// terminal as its stderr it could TIOCSTI keystrokes into the shell that ran
// it (the CVE-2017-5226 class) or change the terminal's modes. Bytes are
// escaped when the destination is a terminal (tools/terminal_escape.hpp)
// and byte-exact otherwise.
//
// The copy runs on a thread of its own so that a destination that blocks
// (a terminal stopped with ^S, a full pipe) stalls only the copy: the
// function then blocks on its own writes, and nsbox run still ends it at
// its deadline. Memory is one 64 KiB buffer and its escaped form, whatever
// the function prints.
#pragma once

#include <memory>

#include "base/result.hpp"

namespace nsbox {

class OutputRelay {
 public:
  OutputRelay() = default;
  OutputRelay(const OutputRelay&) = delete;
  OutputRelay& operator=(const OutputRelay&) = delete;
  ~OutputRelay();

  // Makes the pipe; its write end, write_fd(), goes to the function.
  Status open(int to_fd);
  int write_fd() const;
  // After the function holds its copy: ours would keep EOF from coming.
  void close_write_fd();
  // Not before the sandbox is started: clone and fork want one thread.
  Status start();
  // Copies what is left in the pipe and stops: at EOF once every writer is
  // gone (a sandbox that was destroyed), or when the pipe is empty if some
  // writer lives on (an unisolated run's stray child). A destination that
  // takes no bytes for grace_ms is given up on; the thread is left to die
  // with the process.
  void finish(int grace_ms);

  struct State;  // shared with the copying thread, which may outlive us

 private:
  std::shared_ptr<State> s_;
};

}  // namespace nsbox
