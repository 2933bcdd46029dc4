// A process's Prometheus metrics: the registry its parts record into, the
// standard process_* metrics, and the text a scrape of /metrics returns.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace prometheus {
class Registry;
struct MetricFamily;
}  // namespace prometheus

namespace tern {

/// The metrics of one server (a microservice, the gateway).
///
/// Parts register their families in registry() (prometheus-cpp, Debian's
/// prometheus-cpp-dev) once, at start-up, and keep the metric references:
/// recording is then an atomic add (counters), never a lookup. Histograms
/// on a request path are local_histograms (below): no lock. Values that exist anyway (open
/// connections, requests in hand) are read at scrape time by collectors
/// instead of being kept up to date on every change.
///
/// Thread safety: recording into the registry's metrics is thread-safe
/// (local_histograms are not: one thread records and scrapes them);
/// add_collector() is not (call it before serving); scrape() runs the
/// collectors on the calling thread.
class metrics_registry {
 public:
  metrics_registry();
  ~metrics_registry();
  metrics_registry(const metrics_registry&) = delete;
  metrics_registry& operator=(const metrics_registry&) = delete;

  [[nodiscard]] prometheus::Registry& registry() noexcept { return *registry_; }

  /// Appends families computed at scrape time.
  using collector = std::function<void(std::vector<prometheus::MetricFamily>&)>;
  void add_collector(collector c);
  /// An unlabelled gauge read at scrape time.
  void add_gauge(std::string name, std::string help, std::function<double()> value);

  /// The registry's families and the collectors', on the calling thread
  /// (process_* not included).
  [[nodiscard]] std::vector<prometheus::MetricFamily> collect() const;

  /// Everything, in the Prometheus text format 0.0.4: the registry's
  /// families, the collectors', and process_* (resident and virtual memory,
  /// CPU seconds, open and maximum fds, start time; from /proc/self).
  [[nodiscard]] std::string scrape() const;
  /// The same with `more` merged in (merge_families()): the families other
  /// registries of this process collected, such as a gateway's workers'.
  [[nodiscard]] std::string scrape(std::vector<prometheus::MetricFamily> more) const;

  /// Histogram buckets for request durations in seconds: 0.25 ms to 10 s.
  static const std::vector<double>& duration_buckets();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<collector> collectors_;
};

/// A Prometheus histogram family for one thread: each of its histograms is
/// recorded on the thread that owns the registry (an event loop), and read
/// there by scrape(), as collectors are. An observation is a bucket search
/// and two adds: no lock and no atomic, where prometheus-cpp's Histogram
/// takes a mutex per Observe. A gateway's workers each have their own
/// registry (merge_families() sums them); a service has one loop.
class local_histograms {
 public:
  using labels = std::vector<std::pair<std::string, std::string>>;

  /// One labelled histogram of the family; its address is stable.
  class histogram {
   public:
    explicit histogram(const std::vector<double>& bounds)
        : bounds_(&bounds), counts_(bounds.size() + 1, 0) {}
    /// Counts v in the first bucket whose bound is at least v (+Inf if none).
    void observe(double v) noexcept {
      std::size_t i = 0;
      const auto& b = *bounds_;
      while (i < b.size() && !(v <= b[i])) ++i;
      ++counts_[i];
      sum_ += v;
    }

   private:
    friend class local_histograms;
    const std::vector<double>* bounds_;  // static storage (duration_buckets())
    std::vector<std::uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
    double sum_ = 0;
  };

  /// Registers the family with `m`'s collectors (before serving).
  local_histograms(metrics_registry& m, std::string name, std::string help);
  ~local_histograms();
  local_histograms(const local_histograms&) = delete;
  local_histograms& operator=(const local_histograms&) = delete;

  /// The histogram with these labels (in any order): made on first use
  /// with `bounds` (which must outlive it), the same one after.
  histogram& add(labels l,
                 const std::vector<double>& bounds = metrics_registry::duration_buckets());

 private:
  struct state;
  std::shared_ptr<state> state_;  // shared with the collector
};

/// Merges `more` into `into`: a family already there (by name) takes the
/// other's samples, and samples with the same labels are summed (counters,
/// gauges, untyped values; a histogram's count, sum and buckets); other
/// families are appended. Several registries of one process then read as
/// one: counts add up, and a gauge such as open connections is the total.
void merge_families(std::vector<prometheus::MetricFamily>& into,
                    std::vector<prometheus::MetricFamily> more);

/// The Content-Type of scrape()'s text.
inline constexpr const char* metrics_content_type = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace tern
