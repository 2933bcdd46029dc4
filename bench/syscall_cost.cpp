// What a syscall costs on this host, for reading bench/syscalls.sh's counts
// as time: a recv() that finds nothing (EAGAIN), an epoll_wait() that
// returns at once, and, for scale, a clock read (vDSO, no syscall).
// Run by bench/cpu_split.sh.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace {

template <class F>
double nanoseconds_each(int n, F&& f) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) f();
  std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
  return took.count() / n;
}

}  // namespace

int main() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) != 0) return 1;
  int ep = ::epoll_create1(0);
  if (ep < 0) return 1;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, pair[0], &ev) != 0) return 1;
  constexpr int n = 500000;
  char byte;
  volatile long sink = 0;
  double recv_ns = nanoseconds_each(n, [&] { sink = sink + ::recv(pair[0], &byte, 1, 0); });
  double wait_ns = nanoseconds_each(n, [&] { sink = sink + ::epoll_wait(ep, &ev, 1, 0); });
  double clock_ns = nanoseconds_each(
      n, [&] { sink = sink + std::chrono::steady_clock::now().time_since_epoch().count(); });
  std::printf(
      "one syscall on this host: recv (EAGAIN) %.0f ns, epoll_wait (nothing ready) %.0f ns; "
      "a clock read (no syscall) %.0f ns\n",
      recv_ns, wait_ns, clock_ns);
  ::close(ep);
  ::close(pair[0]);
  ::close(pair[1]);
  return 0;
}
