#include "tern/metrics.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

namespace tern {

namespace {

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily f{std::move(name), std::move(help), type, {}};
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

// The boot time, for process_start_time_seconds (start ticks count from boot).
double boot_time_seconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime") {
      in >> value;
      return value;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

void process_metrics(std::vector<prometheus::MetricFamily>& out) {
  using prometheus::MetricType;
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  static const double boot = boot_time_seconds();
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (in parentheses, which may hold spaces).
  auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> f;
    for (std::string s; fields >> s;) f.push_back(std::move(s));
    // f[0] is field 3 (state): utime is field 14, stime 15, starttime 22,
    // vsize 23, rss 24.
    if (f.size() > 21) {
      double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
      out.push_back(family("process_cpu_seconds_total",
                           "Total user and system CPU time spent in seconds.", MetricType::Counter,
                           cpu));
      out.push_back(family("process_start_time_seconds",
                           "Start time of the process since unix epoch in seconds.",
                           MetricType::Gauge, boot + std::stod(f[19]) / ticks));
      out.push_back(family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                           MetricType::Gauge, std::stod(f[20])));
      out.push_back(family("process_resident_memory_bytes", "Resident memory size in bytes.",
                           MetricType::Gauge, std::stod(f[21]) * page));
    }
  }
  std::error_code ec;
  double fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++fds;
  }
  out.push_back(family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
                       fds > 0 ? fds - 1 : 0));  // not the iterator's own
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    out.push_back(family("process_max_fds", "Maximum number of open file descriptors.",
                         MetricType::Gauge, static_cast<double>(lim.rlim_cur)));
  }
}

}  // namespace

metrics_registry::metrics_registry() : registry_(std::make_shared<prometheus::Registry>()) {}
metrics_registry::~metrics_registry() = default;

void metrics_registry::add_collector(collector c) {
  collectors_.push_back(std::move(c));
}

void metrics_registry::add_gauge(std::string name, std::string help,
                                 std::function<double()> value) {
  add_collector([name = std::move(name), help = std::move(help),
                 value = std::move(value)](std::vector<prometheus::MetricFamily>& out) {
    out.push_back(family(name, help, prometheus::MetricType::Gauge, value()));
  });
}

std::vector<prometheus::MetricFamily> metrics_registry::collect() const {
  auto families = registry_->Collect();
  for (const auto& c : collectors_) c(families);
  return families;
}

std::string metrics_registry::scrape() const {
  return scrape({});
}

std::string metrics_registry::scrape(std::vector<prometheus::MetricFamily> more) const {
  auto families = collect();
  merge_families(families, std::move(more));
  process_metrics(families);
  return prometheus::TextSerializer().Serialize(families);
}

namespace {

void add_sample(prometheus::ClientMetric& into, const prometheus::ClientMetric& m) {
  into.counter.value += m.counter.value;
  into.gauge.value += m.gauge.value;
  into.untyped.value += m.untyped.value;
  auto& h = into.histogram;
  h.sample_count += m.histogram.sample_count;
  h.sample_sum += m.histogram.sample_sum;
  if (h.bucket.size() == m.histogram.bucket.size()) {
    for (std::size_t i = 0; i < h.bucket.size(); ++i) {
      h.bucket[i].cumulative_count += m.histogram.bucket[i].cumulative_count;
    }
  }
  into.summary.sample_count += m.summary.sample_count;
  into.summary.sample_sum += m.summary.sample_sum;
}

}  // namespace

void merge_families(std::vector<prometheus::MetricFamily>& into,
                    std::vector<prometheus::MetricFamily> more) {
  for (auto& f : more) {
    auto same = std::find_if(into.begin(), into.end(),
                             [&](const prometheus::MetricFamily& g) { return g.name == f.name; });
    if (same == into.end()) {
      into.push_back(std::move(f));
      continue;
    }
    // Indexed by labels: a family may hold thousands of samples.
    std::map<std::vector<prometheus::ClientMetric::Label>, std::size_t> at;
    for (std::size_t i = 0; i < same->metric.size(); ++i) at.emplace(same->metric[i].label, i);
    for (auto& m : f.metric) {
      auto [it, added] = at.emplace(m.label, same->metric.size());
      if (added) {
        same->metric.push_back(std::move(m));
      } else {
        add_sample(same->metric[it->second], m);
      }
    }
  }
}

struct local_histograms::state {
  std::string name, help;
  std::vector<std::pair<labels, std::unique_ptr<histogram>>> members;
};

local_histograms::local_histograms(metrics_registry& m, std::string name, std::string help)
    : state_(std::make_shared<state>()) {
  state_->name = std::move(name);
  state_->help = std::move(help);
  m.add_collector([st = state_](std::vector<prometheus::MetricFamily>& out) {
    if (st->members.empty()) return;  // as prometheus-cpp: no samples, no family
    prometheus::MetricFamily f{st->name, st->help, prometheus::MetricType::Histogram, {}};
    for (const auto& [l, h] : st->members) {
      prometheus::ClientMetric m;
      for (const auto& [k, v] : l) m.label.push_back({k, v});
      std::uint64_t total = 0;
      for (std::size_t i = 0; i < h->counts_.size(); ++i) {
        total += h->counts_[i];
        m.histogram.bucket.push_back({total, i < h->bounds_->size()
                                                 ? (*h->bounds_)[i]
                                                 : std::numeric_limits<double>::infinity()});
      }
      m.histogram.sample_count = total;
      m.histogram.sample_sum = h->sum_;
      f.metric.push_back(std::move(m));
    }
    out.push_back(std::move(f));
  });
}

local_histograms::~local_histograms() = default;

local_histograms::histogram& local_histograms::add(labels l, const std::vector<double>& bounds) {
  std::sort(l.begin(), l.end());  // as prometheus-cpp keeps them: by name
  for (auto& [had, h] : state_->members) {
    if (had == l) return *h;  // as prometheus::Family::Add: one histogram per label set
  }
  auto h = std::make_unique<histogram>(bounds);
  auto& ref = *h;
  state_->members.emplace_back(std::move(l), std::move(h));
  return ref;
}

const std::vector<double>& metrics_registry::duration_buckets() {
  static const std::vector<double> b{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  return b;
}

}  // namespace tern
