// A DNS server for tests: answers A and AAAA queries over UDP on loopback
// from a table the test changes while it runs (no caching: TTL 0).
#pragma once

#include "tern/task_group.hpp"

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <asio/use_awaitable.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tern::test {

class dns_server {
 public:
  explicit dns_server(asio::io_context& io)
      : socket_(std::make_shared<asio::ip::udp::socket>(
            io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0))),
        names_(std::make_shared<std::map<std::string, std::vector<asio::ip::address>>>()),
        tasks_(io.get_executor(), "dns server") {
    tasks_.spawn(serve(socket_, names_));
  }
  ~dns_server() {
    std::error_code ignored;
    socket_->close(ignored);
    tasks_.cancel();
  }

  /// "127.0.0.1:port", for client_options::dns_servers.
  [[nodiscard]] std::string address() const {
    return "127.0.0.1:" + std::to_string(socket_->local_endpoint().port());
  }
  /// The addresses `name` resolves to from now on (none: NXDOMAIN).
  void set(const std::string& name, std::vector<asio::ip::address> addresses) {
    (*names_)[name] = std::move(addresses);
  }
  /// Queries answered so far.
  [[nodiscard]] int queries() const noexcept { return *queries_; }

 private:
  using table = std::map<std::string, std::vector<asio::ip::address>>;

  asio::awaitable<void> serve(std::shared_ptr<asio::ip::udp::socket> sock,
                              std::shared_ptr<table> names) {
    auto count = queries_;
    unsigned char in[512];
    for (;;) {
      asio::ip::udp::endpoint from;
      std::size_t n = 0;
      try {
        n = co_await sock->async_receive_from(asio::buffer(in), from, asio::use_awaitable);
      } catch (const std::system_error&) {
        co_return;  // closed
      }
      if (n < 12) continue;
      // The question: labels, then type and class.
      std::size_t at = 12;
      std::string name;
      while (at < n && in[at] != 0) {
        std::size_t len = in[at];
        if (len > 63 || at + 1 + len > n) break;
        if (!name.empty()) name += '.';
        name.append(reinterpret_cast<const char*>(in) + at + 1, len);
        at += 1 + len;
      }
      if (at + 5 > n) continue;
      std::uint16_t type = static_cast<std::uint16_t>(in[at + 1] << 8 | in[at + 2]);
      std::size_t question_end = at + 5;

      std::vector<asio::ip::address> found;
      auto it = names->find(name);
      for (const auto& a : it == names->end() ? found : it->second) {
        if ((type == 1 && a.is_v4()) || (type == 28 && a.is_v6())) found.push_back(a);
      }
      std::vector<unsigned char> out(in, in + question_end);
      out[2] = 0x81;                              // a response, recursion desired
      out[3] = it == names->end() ? 0x83 : 0x80;  // recursion available; NXDOMAIN or NOERROR
      out[6] = 0;
      out[7] = static_cast<unsigned char>(found.size());
      out[8] = out[9] = out[10] = out[11] = 0;  // no authority, no additional records
      for (const auto& a : found) {
        unsigned char rr[] = {0xc0,
                              12,  // the question's name
                              static_cast<unsigned char>(type >> 8),
                              static_cast<unsigned char>(type),
                              0,
                              1,  // IN
                              0,
                              0,
                              0,
                              0,  // TTL 0
                              0,
                              static_cast<unsigned char>(a.is_v4() ? 4 : 16)};
        out.insert(out.end(), std::begin(rr), std::end(rr));
        if (a.is_v4()) {
          auto b = a.to_v4().to_bytes();
          out.insert(out.end(), b.begin(), b.end());
        } else {
          auto b = a.to_v6().to_bytes();
          out.insert(out.end(), b.begin(), b.end());
        }
      }
      ++*count;
      try {
        co_await sock->async_send_to(asio::buffer(out), from, asio::use_awaitable);
      } catch (const std::system_error&) {
        co_return;
      }
    }
  }

  std::shared_ptr<asio::ip::udp::socket> socket_;
  std::shared_ptr<table> names_;
  std::shared_ptr<int> queries_ = std::make_shared<int>(0);
  tern::task_group tasks_;  // serve(), which holds what it uses
};

}  // namespace tern::test
