#include "tern/metrics.hpp"

#include <doctest/doctest.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace {

// One worker's metrics, as a gateway worker keeps them.
struct worker_metrics {
  tern::metrics_registry m;
  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter().Name("requests_total").Help("h").Register(m.registry());
  prometheus::Family<prometheus::Histogram>& took =
      prometheus::BuildHistogram().Name("took_seconds").Help("h").Register(m.registry());
};

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("merge_families sums samples with the same labels and keeps the others") {
  worker_metrics a, b;
  a.requests.Add({{"route", "/x"}}).Increment(3);
  b.requests.Add({{"route", "/x"}}).Increment(4);
  b.requests.Add({{"route", "/y"}}).Increment(1);
  a.took.Add({{"route", "/x"}}, prometheus::Histogram::BucketBoundaries{0.1, 1}).Observe(0.05);
  b.took.Add({{"route", "/x"}}, prometheus::Histogram::BucketBoundaries{0.1, 1}).Observe(0.5);
  b.took.Add({{"route", "/x"}}, prometheus::Histogram::BucketBoundaries{0.1, 1}).Observe(5);
  double open_a = 2, open_b = 5;
  a.m.add_gauge("open", "h", [&] { return open_a; });
  b.m.add_gauge("open", "h", [&] { return open_b; });

  auto all = a.m.collect();
  tern::merge_families(all, b.m.collect());
  tern::metrics_registry process;
  prometheus::BuildGauge().Name("only_once").Help("h").Register(process.registry()).Add({}).Set(9);
  auto text = process.scrape(std::move(all));

  CHECK(has_line(text, R"(requests_total{route="/x"} 7)"));
  CHECK(has_line(text, R"(requests_total{route="/y"} 1)"));
  CHECK(has_line(text, R"(took_seconds_count{route="/x"} 3)"));
  CHECK(has_line(text, R"(took_seconds_bucket{route="/x",le="0.1"} 1)"));
  CHECK(has_line(text, R"(took_seconds_bucket{route="/x",le="1"} 2)"));
  CHECK(has_line(text, R"(took_seconds_bucket{route="/x",le="+Inf"} 3)"));
  CHECK(has_line(text, "open 7"));
  CHECK(has_line(text, "only_once 9"));
  // Each family once, its samples together, as the text format requires.
  auto count = [&](const std::string& s) {
    std::size_t n = 0;
    for (auto at = text.find(s); at != std::string::npos; at = text.find(s, at + 1)) ++n;
    return n;
  };
  CHECK(count("# TYPE requests_total counter") == 1);
  CHECK(count("# TYPE open gauge") == 1);
  CHECK(count("# TYPE process_cpu_seconds_total") == 1);
}

TEST_CASE("a local histogram reads as prometheus-cpp's Histogram would, with the same samples") {
  static const std::vector<double> bounds{0.1, 1, 2.5};
  const double samples[] = {0.05, 0.1, 0.5, 1, 1.0000001, 2.5, 3, 1e9, -1};
  tern::metrics_registry theirs, ours;
  auto& family =
      prometheus::BuildHistogram().Name("took_seconds").Help("h").Register(theirs.registry());
  tern::local_histograms local(ours, "took_seconds", "h");
  auto text = [](const tern::metrics_registry& m) {
    return prometheus::TextSerializer().Serialize(m.collect());
  };
  CHECK(text(ours) == text(theirs));  // no samples yet: no family, as prometheus-cpp
  auto& reference = family.Add({{"route", "/x"}, {"method", "GET"}},
                               prometheus::Histogram::BucketBoundaries(bounds));
  auto& h = local.add({{"route", "/x"}, {"method", "GET"}}, bounds);
  for (double v : samples) {
    reference.Observe(v);
    h.observe(v);
  }
  // One histogram per label set, whatever the order the labels are named in.
  CHECK(&local.add({{"method", "GET"}, {"route", "/x"}}, bounds) == &h);
  local.add({{"route", "/y"}}, bounds);  // another, empty
  family.Add({{"route", "/y"}}, prometheus::Histogram::BucketBoundaries(bounds));

  // The same lines (prometheus-cpp orders a family's samples by hash).
  auto lines = [](const std::string& t) {
    std::vector<std::string> out;
    std::istringstream in(t);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    std::sort(out.begin(), out.end());
    return out;
  };
  CHECK(lines(text(ours)) == lines(text(theirs)));
  CHECK(has_line(text(ours), R"(took_seconds_bucket{method="GET",route="/x",le="1"} 5)"));
  CHECK(has_line(text(ours), R"(took_seconds_bucket{method="GET",route="/x",le="+Inf"} 9)"));
}
