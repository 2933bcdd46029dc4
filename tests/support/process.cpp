#include "process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace tern::test {

namespace {
[[maybe_unused]] bool still_listening(unsigned short port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}
}  // namespace

child_process::child_process(const std::string& path, const std::vector<std::string>& args,
                             std::chrono::milliseconds limit) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  out_fd_ = fds[0];
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (line.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{out_fd_, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      throw std::runtime_error(path + " did not report READY in time");
    }
    char buf[256];
    auto n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) throw std::runtime_error(path + " exited before READY");
    line.append(buf, static_cast<std::size_t>(n));
  }
  if (line.rfind("READY ", 0) != 0) throw std::runtime_error("unexpected output: " + line);
  port_ = static_cast<unsigned short>(std::stoul(line.substr(6)));
}

child_process::~child_process() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
}

void child_process::signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
  last_signal_ = sig;
}

int child_process::wait(std::chrono::milliseconds limit) {
  if (pid_ <= 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + limit;
  [[maybe_unused]] int waits = 0;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
#if defined(__SANITIZE_THREAD__)
    // ThreadSanitizer defers a signal to the next intercepted call, and a
    // child idle in epoll_wait may never make one: say it again, until the
    // child says it saw one (a repeat would be a second signal, which ends
    // a drain at once).
    if (last_signal_ != 0 && ++waits % 50 == 0 && !saw_signal() && still_listening(port_)) {
      kill(pid_, last_signal_);
    }
#endif
  }
}

bool child_process::saw_signal() {
  char buf[256];
  pollfd p{out_fd_, POLLIN, 0};
  while (out_fd_ >= 0 && poll(&p, 1, 0) > 0) {
    auto n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) break;
    output_.append(buf, static_cast<std::size_t>(n));
  }
  return output_.find("SIGNALLED\n") != std::string::npos;
}

std::string sibling_binary(const std::string& name) {
  auto self = std::filesystem::read_symlink("/proc/self/exe");
  return (self.parent_path() / name).string();
}

}  // namespace tern::test
