// How a client_proxy copes with failing instances: outlier ejection, the
// circuit breaker and retries (their options; client_options holds them).
#pragma once

#include <chrono>

namespace tern {

/// Passive outlier detection: an endpoint whose calls keep failing is left
/// out for a while. Failures are failed connects, timeouts, lost
/// connections, protocol errors and 5xx-class errors (errc::internal, and
/// errc::remote with a status of 500-599); anything else is a success.
struct ejection_options {
  /// Consecutive failures that eject an endpoint; 0 turns ejection off.
  int consecutive_failures = 5;
  /// The first ejection lasts base_time, the k-th k times as long, up to max_time.
  std::chrono::milliseconds base_time{1000};
  std::chrono::milliseconds max_time{30000};
  /// At most this share of the endpoints is out at once (with two or more,
  /// one may always be; the only endpoint never is).
  int max_ejected_percent = 50;
  /// An ejected endpoint is asked tern.health this often; an answer brings
  /// it back before its time is up.
  std::chrono::milliseconds probe_interval{500};
};

/// The circuit breaker of the whole service: while it is open, calls fail
/// at once with errc::circuit_open instead of waiting on a service that
/// does not answer. Failures count as for ejection (a call that found no
/// endpoint to connect to is one, but not one refused at once while its
/// endpoints back off after a failed connect: the calls that waited on that
/// connect counted it; a half-open trial always counts).
struct breaker_options {
  /// Consecutive failed calls that open it; 0: not counted.
  int consecutive_failures = 20;
  /// Or this share of failed calls over `window` (0 < rate <= 1; 0: not
  /// counted), once at least `min_calls` calls ended in it.
  double failure_rate = 0.5;
  std::chrono::milliseconds window{10000};
  int min_calls = 20;
  /// How long it stays open. Then it is half-open: `half_open_calls`
  /// trial calls go through; a success closes it, a failure opens it again.
  std::chrono::milliseconds open_time{5000};
  int half_open_calls = 1;
};

/// Retries of calls that may safely run twice (call_options::idempotent),
/// on another endpoint, after a lost connection, a protocol error or a
/// 5xx-class error. A call that could not be sent at all (no endpoint
/// would connect) is retried whether idempotent or not. Never past the
/// call's deadline, and never over the budget.
struct retry_options {
  /// Attempts in all (1: no retries).
  int max_attempts = 3;
  /// Full-jitter backoff: before attempt k+1, a random wait of up to
  /// min(max_backoff, base_backoff * 2^(k-1)).
  std::chrono::milliseconds base_backoff{10};
  std::chrono::milliseconds max_backoff{250};
  /// The budget: retries over the last budget_window stay under
  /// budget_ratio times the calls in it, plus budget_min_retries, so a
  /// sick service is not sent three times its load.
  double budget_ratio = 0.2;
  int budget_min_retries = 10;
  std::chrono::milliseconds budget_window{10000};
};

}  // namespace tern
