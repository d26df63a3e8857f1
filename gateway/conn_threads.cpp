#include "gateway/conn_threads.hpp"

#include <system_error>

#include "base/log.hpp"

namespace nsbox {

ConnectionThreads::ConnectionThreads(size_t max_threads, size_t keep,
                                     std::chrono::milliseconds idle_exit)
    : max_threads_(max_threads < 1 ? 1 : max_threads), keep_(keep), idle_exit_(idle_exit) {}

ConnectionThreads::~ConnectionThreads() {
  shutdown();
}

void ConnectionThreads::enqueue(std::function<void()> fn) {
  std::vector<std::thread> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    finished.swap(retired_);
    // A thread notified but not yet awake still counts as idle, so compare
    // with everything queued, not just this job.
    if (idle_ < jobs_.size() && threads_.size() < max_threads_) {
      try {
        // Registered before the lock is released: the new thread's first
        // step takes the lock, so it always finds itself in threads_.
        std::thread t([this] { work(); });
        threads_.emplace(t.get_id(), std::move(t));
      } catch (const std::system_error& e) {
        // Out of threads (RLIMIT_NPROC, memory): the job waits for a
        // running thread instead.
        LOG_WARN("connection threads: cannot start another (%s); %zu running", e.what(),
                 threads_.size());
      }
    }
  }
  cv_.notify_one();
  for (auto& t : finished) t.join();
}

void ConnectionThreads::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (jobs_.empty()) {
      if (shutdown_) break;
      idle_++;
      bool woken = cv_.wait_for(lock, idle_exit_, [this] { return !jobs_.empty() || shutdown_; });
      idle_--;
      if (!woken && threads_.size() > keep_) break;  // idle too long, and above the floor
      continue;
    }
    std::function<void()> fn = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    try {
      fn();
    } catch (const std::exception& e) {
      // An exception leaving a std::thread ends the process: one request
      // (out of memory while answering, say) must not take the daemon down.
      LOG_ERROR("connection thread: a job failed: %s", e.what());
    } catch (...) {
      LOG_ERROR("connection thread: a job failed");
    }
    fn = nullptr;  // the connection's state goes before we wait again
    lock.lock();
  }
  // A joinable thread that has exited still holds its stack until joined.
  // Join those that retired before us, and leave ourselves to whoever comes
  // next (enqueue, the next to retire, or shutdown), so that after a burst
  // at most one exited thread waits to be joined. shutdown() may have taken
  // our std::thread already, and then joins it itself.
  std::vector<std::thread> earlier;
  earlier.swap(retired_);
  auto it = threads_.find(std::this_thread::get_id());
  if (it != threads_.end()) {
    retired_.push_back(std::move(it->second));
    threads_.erase(it);
  }
  lock.unlock();
  for (auto& t : earlier) t.join();
}

void ConnectionThreads::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
  // Threads may retire while we join, so take turns until none is left.
  for (;;) {
    std::vector<std::thread> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, t] : threads_) all.push_back(std::move(t));
      threads_.clear();
      for (auto& t : retired_) all.push_back(std::move(t));
      retired_.clear();
    }
    if (all.empty()) return;
    for (auto& t : all) t.join();
  }
}

ConnectionThreads::Stats ConnectionThreads::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return {threads_.size(), idle_, jobs_.size(), shutdown_};
}

}  // namespace nsbox
