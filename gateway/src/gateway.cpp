#include "gateway.hpp"

#include "json_writer.hpp"

#include <tern/packed.hpp>

#include <spdlog/spdlog.h>

#include <array>
#include <optional>

namespace tern::gateway {

http_response error_for(const rpc_error& e, const upstream& service) {
  switch (e.kind()) {
    case errc::remote: {
      int status = e.status() >= 400 && e.status() <= 599 ? e.status() : 500;
      return error_response(status, e.message());
    }
    case errc::internal:
      return error_response(500, "Internal server error");
    case errc::no_handler:
      return error_response(502, "service " + service.name + " has no handler for this route");
    case errc::decode_error:
      return error_response(502, "service " + service.name + " sent an unreadable reply");
    case errc::timeout:
      return error_response(504, "service " + service.name + " did not answer within " +
                                     std::to_string(service.timeout.count()) + " ms");
    case errc::connection_refused:
    case errc::connection_closed:
    case errc::protocol_error:
    case errc::cancelled:
      break;
  }
  return error_response(503, "service " + service.name + " is unavailable");
}

gateway::gateway(asio::io_context& io, gateway_config cfg)
    : io_(io), cfg_(std::move(cfg)), warnings_(cfg_.upstreams.size()) {
  for (const auto& u : cfg_.upstreams) {
    clients_.push_back(std::make_unique<tern::client_proxy>(
        io_, tern::client_options{
                 .host = u.host,
                 .port = u.port,
                 .timeout = u.timeout,
                 .connect_timeout = std::min(u.timeout, std::chrono::milliseconds(2000)),
                 .backoff_initial = std::chrono::milliseconds(50),
                 .backoff_max = std::chrono::milliseconds(1000)}));
  }
}

void gateway::close_upstreams() {
  for (auto& c : clients_) c->close();
}

const route* gateway::match(const http_request& req, params& captured, bool& path_known) const {
  std::string_view path = req.path;
  if (path.empty() || path[0] != '/') return nullptr;
  path.remove_prefix(1);
  std::array<std::string_view, 16> segs;
  std::size_t count = 0;
  for (;;) {
    if (count == segs.size()) return nullptr;
    auto slash = path.find('/');
    segs[count++] = path.substr(0, slash);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  for (const auto& r : cfg_.routes) {
    if (r.segments.size() != count) continue;
    captured.clear();
    bool ok = true;
    for (std::size_t i = 0; i < count && ok; ++i) {
      const auto& want = r.segments[i];
      if (!want.empty() && want[0] == ':') {
        ok = !segs[i].empty();
        if (ok)
          captured.emplace_back(std::string_view(want).substr(1), percent_decode(segs[i], false));
      } else {
        ok = segs[i] == want;
      }
    }
    if (!ok) continue;
    path_known = true;
    // HEAD is GET without the body (the server leaves it out).
    if (r.method == req.method || (req.method == "HEAD" && r.method == "GET")) return &r;
  }
  return nullptr;
}

void gateway::warn_upstream_failure(std::size_t upstream, const http_request& req,
                                    const rpc_error& e) {
  // At most one line per upstream per second: a dead service under load
  // must not turn into a log flood.
  auto& w = warnings_[upstream];
  auto now = std::chrono::steady_clock::now();
  if (now - w.last < std::chrono::seconds(1)) {
    ++w.suppressed;
    return;
  }
  std::string more =
      w.suppressed ? " (and " + std::to_string(w.suppressed) + " more failures since)" : "";
  spdlog::warn("{} {}: {} failed ({}): {}{}", req.method, req.target, cfg_.upstreams[upstream].name,
               to_string(e.kind()), e.what(), more);
  w.last = now;
  w.suppressed = 0;
}

asio::awaitable<http_response> gateway::handle(http_request& req) {
  if (req.path == "/health" && req.method == "GET") {
    http_response r;
    r.body = R"({"status":"ok"})";
    co_return r;
  }
  params captured;
  bool path_known = false;
  const route* r = match(req, captured, path_known);
  if (!r) co_return error_response(404, "Cannot " + std::string(req.method) + " " + req.path);
  co_return co_await run(*r, req, captured);
}

namespace {

// Writes each reply value as JSON into its slot (a stream's last value wins,
// as in send()).
struct json_sink {
  std::string* out;
  void operator()(const tern::value_view& v) const {
    out->clear();
    append_json(v.packed(), *out);
  }
};

// One request's call data, reply JSON and calls. Kept per thread between
// requests, so their memory is reused instead of allocated for each.
struct call_buffers {
  std::vector<std::string> data, json;
  std::vector<json_sink> sinks;
  std::vector<tern::raw_call> calls;

  // Buffers that grew large for one big reply are not kept.
  [[nodiscard]] bool worth_keeping() const {
    std::size_t bytes = 0;
    for (const auto& j : json) bytes += j.capacity();
    return bytes <= 64 * 1024;
  }
};

class borrowed_buffers {
 public:
  borrowed_buffers() {
    if (spare().empty()) {
      b_ = std::make_unique<call_buffers>();
    } else {
      b_ = std::move(spare().back());
      spare().pop_back();
    }
  }
  borrowed_buffers(const borrowed_buffers&) = delete;
  borrowed_buffers& operator=(const borrowed_buffers&) = delete;
  ~borrowed_buffers() {
    b_->data.clear();  // request bodies: rebuilt for each request, and not to be kept
    if (spare().size() < 1024 && b_->worth_keeping()) spare().push_back(std::move(b_));
  }
  call_buffers* operator->() const noexcept { return b_.get(); }

 private:
  static std::vector<std::unique_ptr<call_buffers>>& spare() {
    thread_local std::vector<std::unique_ptr<call_buffers>> kept;
    return kept;
  }
  std::unique_ptr<call_buffers> b_;
};

}  // namespace

asio::awaitable<http_response> gateway::run(const route& r, const http_request& req,
                                            const params& p) {
  const std::size_t n = r.calls.size();
  borrowed_buffers b;
  auto& data = b->data;
  auto& json = b->json;
  data.resize(n);
  json.resize(n);
  try {
    for (std::size_t i = 0; i < n; ++i) {
      data[i] = build_call_data(r.calls[i].second.data, p, req.query, req.body);
    }
  } catch (const rpc_error& e) {
    co_return error_response(400, e.message());
  }

  // Every call at once; replies are written as JSON straight from the
  // receive buffer, each into its own slot (they may arrive in any order).
  auto& sinks = b->sinks;
  auto& calls = b->calls;
  sinks.clear();
  calls.clear();
  for (std::size_t i = 0; i < n; ++i) {
    json[i].clear();
    sinks.push_back({&json[i]});
  }
  for (std::size_t i = 0; i < n; ++i) {
    const auto& spec = r.calls[i].second;
    // The sinks are function_refs: the sink objects they point to stay put
    // (all pushed above, before any reference is taken).
    calls.push_back({.client = clients_[spec.upstream].get(),
                     .p = &spec.pattern,
                     .packed_data = data[i],
                     .on_value = sinks[i]});
  }
  co_await tern::send_raw_all(calls);
  for (std::size_t i = 0; i < n; ++i) {
    if (!calls[i].error) continue;
    const auto& e = *calls[i].error;
    const auto& u = cfg_.upstreams[r.calls[i].second.upstream];
    if (e.kind() == errc::remote) {
      spdlog::debug("{} {}: {} answered {} {}", req.method, req.target, u.name, e.status(),
                    e.what());
    } else {
      warn_upstream_failure(r.calls[i].second.upstream, req, e);
    }
    co_return error_for(e, u);
  }

  http_response resp;
  resp.status = r.status;
  if (!r.aggregate) {
    resp.body = std::move(json[0]);
    if (resp.body.empty()) resp.body = "null";  // a reply without a value
  } else {
    std::size_t size = 2;
    for (std::size_t i = 0; i < n; ++i) size += r.calls[i].first.size() + json[i].size() + 8;
    resp.body.reserve(size);
    resp.body += '{';
    for (std::size_t i = 0; i < n; ++i) {
      if (i) resp.body += ',';
      append_json_string(r.calls[i].first, resp.body);
      resp.body += ':';
      resp.body += json[i].empty() ? std::string_view("null") : std::string_view(json[i]);
    }
    resp.body += '}';
  }
  co_return resp;
}

}  // namespace tern::gateway
