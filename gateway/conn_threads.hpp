// Connection threads for cpp-httplib: one per open connection (keep-alive
// connections hold theirs), made on demand up to a cap and retired after an
// idle spell. httplib::ThreadPool instead makes a fixed set at start: sized
// for the worst case it costs hundreds of idle threads, sized small it makes
// keep-alive clients queue behind each other.
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace nsbox {

class ConnectionThreads final : public httplib::TaskQueue {
 public:
  // max_threads: the cap; beyond it connections wait in order for a thread.
  // keep: threads kept however long idle; idle_exit: when the others retire.
  ConnectionThreads(size_t max_threads, size_t keep, std::chrono::milliseconds idle_exit);
  ~ConnectionThreads() override;

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then joins every thread. Idempotent.
  void shutdown() override;

  struct Stats {
    size_t threads = 0;     // alive
    size_t idle = 0;        // alive and waiting for a connection
    size_t queued = 0;      // connections waiting for a thread
    bool stopping = false;  // shutdown() has begun
  };
  Stats stats();

 private:
  void work();

  const size_t max_threads_;
  const size_t keep_;
  const std::chrono::milliseconds idle_exit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::map<std::thread::id, std::thread> threads_;
  std::vector<std::thread> retired_;  // exited on their own; joined by the next caller
  size_t idle_ = 0;
  bool shutdown_ = false;
};

}  // namespace nsbox
