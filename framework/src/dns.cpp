#include "dns.hpp"

#include "tern/transport/endpoint.hpp"

#include "tern/transport/unique_function.hpp"

#include <ares.h>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace tern::detail {

namespace {

void init_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS) {
      throw std::runtime_error(std::string("c-ares: ") + ares_strerror(rc));
    }
  });
}

// "10.0.0.1", "10.0.0.1:5353", "::1", "[::1]:5353" → c-ares's "host:port" list item.
std::string server_item(const std::string& s) {
  return transport::to_string(transport::parse_ip_endpoint(s, 53));
}

}  // namespace

bool is_address_literal(const std::string& host) {
  std::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

// A socket c-ares asked to watch. Waits hold it by shared_ptr; once c-ares
// lets the socket go, `gone` makes their completions do nothing.
struct watch {
  watch(const asio::any_io_executor& ex, ares_socket_t fd) : fd(fd), desc(ex, fd) {}
  ares_socket_t fd;
  asio::posix::stream_descriptor desc;
  bool read = false, write = false;       // what c-ares wants
  bool reading = false, writing = false;  // a wait is pending
  bool gone = false;
};

struct dns_resolver::state : std::enable_shared_from_this<dns_resolver::state> {
  explicit state(asio::any_io_executor e) : ex(std::move(e)), timer(ex) {}

  asio::any_io_executor ex;
  ares_channel channel = nullptr;
  std::unordered_map<ares_socket_t, std::shared_ptr<watch>> watches;
  asio::steady_timer timer;
  bool closed = false;

  static void on_socket(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<state*>(data);
    auto it = self->watches.find(fd);
    if (!readable && !writable) {
      if (it == self->watches.end()) return;
      auto w = it->second;
      self->watches.erase(it);
      w->gone = true;
      std::error_code ignored;
      w->desc.cancel(ignored);
      (void)w->desc.release();  // c-ares closes the socket itself
      return;
    }
    if (it == self->watches.end()) {
      it = self->watches.emplace(fd, std::make_shared<watch>(self->ex, fd)).first;
    }
    auto w = it->second;
    w->read = readable != 0;
    w->write = writable != 0;
    self->arm(w);
  }

  void arm(const std::shared_ptr<watch>& w) {
    if (w->read && !w->reading) {
      w->reading = true;
      w->desc.async_wait(asio::posix::descriptor_base::wait_read,
                         [self = shared_from_this(), w](std::error_code ec) {
                           w->reading = false;
                           if (w->gone || self->closed || ec) return;
                           ares_process_fd(self->channel, w->fd, ARES_SOCKET_BAD);
                           self->after_work(w);
                         });
    }
    if (w->write && !w->writing) {
      w->writing = true;
      w->desc.async_wait(asio::posix::descriptor_base::wait_write,
                         [self = shared_from_this(), w](std::error_code ec) {
                           w->writing = false;
                           if (w->gone || self->closed || ec) return;
                           ares_process_fd(self->channel, ARES_SOCKET_BAD, w->fd);
                           self->after_work(w);
                         });
    }
  }

  void after_work(const std::shared_ptr<watch>& w) {
    if (!w->gone) arm(w);
    rearm_timer();
  }

  // c-ares's own retransmits and timeouts run when it says.
  void rearm_timer() {
    if (pending.empty()) {
      timer.cancel();
      return;
    }
    timeval max{5, 0}, tv{};
    auto* next = ares_timeout(channel, &max, &tv);
    timer.expires_after(std::chrono::seconds(next->tv_sec) +
                        std::chrono::microseconds(next->tv_usec));
    timer.async_wait([self = shared_from_this()](std::error_code ec) {
      if (ec || self->closed) return;
      ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      self->rearm_timer();
    });
  }

  // Lookups in progress: their completions, by a key c-ares hands back.
  struct lookup {
    state* owner;
    transport::unique_function<void(dns_answer)> done;
  };
  std::unordered_map<lookup*, std::unique_ptr<lookup>> pending;

  static void on_answer(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
    auto* l = static_cast<lookup*>(arg);
    dns_answer answer;
    if (status == ARES_SUCCESS && result) {
      for (auto* n = result->nodes; n; n = n->ai_next) {
        if (n->ai_family == AF_INET) {
          const auto* sa = reinterpret_cast<const sockaddr_in*>(n->ai_addr);
          asio::ip::address_v4::bytes_type b;
          std::memcpy(b.data(), &sa->sin_addr, 4);
          answer.addresses.emplace_back(asio::ip::address_v4(b));
        } else if (n->ai_family == AF_INET6) {
          const auto* sa = reinterpret_cast<const sockaddr_in6*>(n->ai_addr);
          asio::ip::address_v6::bytes_type b;
          std::memcpy(b.data(), &sa->sin6_addr, 16);
          answer.addresses.emplace_back(asio::ip::address_v6(b, sa->sin6_scope_id));
        }
      }
      if (answer.addresses.empty()) answer.error = "no A or AAAA record";
    } else {
      answer.error = ares_strerror(status);
    }
    if (result) ares_freeaddrinfo(result);
    auto* self = l->owner;
    auto node = self->pending.extract(l);
    // Completed on the loop's next turn: c-ares may call back from inside
    // ares_getaddrinfo() (a literal, /etc/hosts) or while being destroyed.
    asio::post(self->ex, [done = std::move(l->done), answer = std::move(answer)]() mutable {
      done(std::move(answer));
    });
  }
};

dns_resolver::dns_resolver(asio::any_io_executor ex, const std::vector<std::string>& servers)
    : state_(std::make_shared<state>(std::move(ex))) {
  init_library();
  ares_options opts{};
  opts.sock_state_cb = &state::on_socket;
  opts.sock_state_cb_data = state_.get();
  opts.timeout = 500;  // ms, with ARES_OPT_TIMEOUTMS
  opts.tries = 3;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  if (int rc = ares_init_options(&state_->channel, &opts, mask); rc != ARES_SUCCESS) {
    throw std::runtime_error(std::string("cannot start a DNS resolver: ") + ares_strerror(rc));
  }
  if (!servers.empty()) {
    std::string csv;
    for (const auto& s : servers) {
      if (!csv.empty()) csv += ',';
      csv += server_item(s);
    }
    if (int rc = ares_set_servers_ports_csv(state_->channel, csv.c_str()); rc != ARES_SUCCESS) {
      ares_destroy(state_->channel);
      throw std::invalid_argument("bad DNS server list \"" + csv + "\": " + ares_strerror(rc));
    }
  }
}

dns_resolver::~dns_resolver() {
  auto& s = *state_;
  ares_destroy(s.channel);  // pending lookups complete with an error (posted)
  s.closed = true;
  s.timer.cancel();
  for (auto& [fd, w] : s.watches) {
    w->gone = true;
    std::error_code ignored;
    w->desc.cancel(ignored);
    (void)w->desc.release();
  }
  s.watches.clear();
}

asio::awaitable<dns_answer> dns_resolver::resolve(const std::string& name) {
  auto s = state_;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(dns_answer)>(
      [&](auto handler) {
        auto l = std::make_unique<state::lookup>();
        l->owner = s.get();
        l->done = [h = std::move(handler)](dns_answer a) mutable { std::move(h)(std::move(a)); };
        auto* key = l.get();
        s->pending.emplace(key, std::move(l));
        ares_addrinfo_hints hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        ares_getaddrinfo(s->channel, name.c_str(), nullptr, &hints, &state::on_answer, key);
        if (!s->closed && s->pending.count(key)) s->rearm_timer();
      },
      asio::use_awaitable);
}

}  // namespace tern::detail
