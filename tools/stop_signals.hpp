// SIGINT, SIGTERM and SIGHUP for `nsbox run`: turned into "kill the
// sandbox" so that the run ends the ordinary way, its cgroup leaves and
// overlay removed, instead of the process dying with them left for a
// later sweep (Ctrl-C and a closed terminal are the common ways a run
// ends early).
#pragma once

#include <functional>

namespace nsbox {

// Blocks the three signals in the calling thread (and every thread and
// child it makes afterwards: children reset their mask) and starts a
// thread that waits for them. Call once, before any other thread starts.
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
