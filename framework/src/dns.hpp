// DNS lookups on the event loop (c-ares): every A and AAAA address of a
// name, for endpoint discovery. Internal to framework/.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/address.hpp>

#include <memory>
#include <string>
#include <vector>

namespace tern::detail {

/// A lookup's outcome: the addresses (none on failure) or why not.
struct dns_answer {
  std::vector<asio::ip::address> addresses;
  std::string error;  ///< empty on success
};

/// One c-ares channel whose sockets and timers run on `ex` (no thread of
/// its own). `servers` are "ip", "ip:port" or "[ipv6]:port"; empty means the
/// system's (/etc/resolv.conf, and /etc/hosts first). Each query is tried
/// three times, 500 ms apart at first, across the servers.
///
/// Thread safety: the executor's (single) thread.
class dns_resolver {
 public:
  /// Throws std::invalid_argument for a server list c-ares refuses, and
  /// std::runtime_error when the channel cannot be made.
  dns_resolver(asio::any_io_executor ex, const std::vector<std::string>& servers);
  ~dns_resolver();
  dns_resolver(const dns_resolver&) = delete;
  dns_resolver& operator=(const dns_resolver&) = delete;

  /// Every address of `name`, A and AAAA, in the order c-ares gives (a
  /// literal address comes back as itself). Never throws for a failed
  /// lookup; see dns_answer::error. Destroying the resolver ends pending
  /// lookups with an error.
  asio::awaitable<dns_answer> resolve(const std::string& name);

  struct state;

 private:
  std::shared_ptr<state> state_;
};

/// True if `host` is an IPv4 or IPv6 literal (needs no lookup).
bool is_address_literal(const std::string& host);

}  // namespace tern::detail
