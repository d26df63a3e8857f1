// SIGINT, SIGTERM, SIGHUP and SIGQUIT for `nsbox run`: turned into "kill the
// sandbox" so that the run ends the ordinary way, its cgroup leaves and
// overlay removed, instead of the process dying with them left for a
// later sweep (Ctrl-C and a closed terminal are the common ways a run
// ends early).
#pragma once

#include <functional>

namespace nsbox {

// Blocks the three signals in the calling thread (and every thread and
// child it makes afterwards: children reset their mask). Call before any
// other thread starts; they stay pending until watch_stop_signals().
void block_stop_signals();

// Starts the thread that waits for them. Only once the sandbox exists: a
// thread alive while the sandbox is cloned may hold a lock (malloc's, in
// its own start) that the clone then waits for forever.
void watch_stop_signals();

// What a stop signal does: called on the watching thread, at most once per
// signal. Cleared (and waited for) by passing nullptr.
void on_stop_signal(std::function<void()> action);

// The first stop signal received, or 0.
int stop_signal();

// Ends the process as that signal would have (default disposition,
// unblocked, raised), so that a shell sees the run interrupted; returns
// 128 + sig should it survive.
int die_of(int sig);

}  // namespace nsbox
