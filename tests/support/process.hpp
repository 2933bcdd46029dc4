// Starting and stopping real service processes from tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace tern::test {

/// A child process whose stdout announces "READY <port>". Killed (SIGKILL)
/// on destruction if still running.
class child_process {
 public:
  /// Starts `path args...` and waits up to `limit` for its READY line.
  /// Throws std::runtime_error if it exits or stays silent.
  child_process(const std::string& path, const std::vector<std::string>& args,
                std::chrono::milliseconds limit = std::chrono::seconds(10));
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  [[nodiscard]] unsigned short port() const noexcept { return port_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  void signal(int sig);
  /// Waits up to `limit` for exit; returns the exit status (128 + signal
  /// when killed), or -1 if it did not exit in time.
  int wait(std::chrono::milliseconds limit = std::chrono::seconds(10));
  /// Whether the child has printed "SIGNALLED" (tern_test_service does when
  /// SIGINT or SIGTERM reaches it).
  bool saw_signal();

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  unsigned short port_ = 0;
  int last_signal_ = 0;
  std::string output_;  // stdout after the READY line
};

/// Path of a binary built next to the test executable.
std::string sibling_binary(const std::string& name);

}  // namespace tern::test
