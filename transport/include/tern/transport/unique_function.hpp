// A move-only type-erased callable (std::move_only_function arrives in C++23).
#pragma once

#include <memory>
#include <utility>

namespace tern::transport {

template <class Sig>
class unique_function;

/// Owns any callable, including move-only completion handlers. Empty when
/// default-constructed or moved from.
template <class R, class... Args>
class unique_function<R(Args...)> {
 public:
  unique_function() = default;
  template <class F>
  unique_function(F f)  // NOLINT(google-explicit-constructor)
      : impl_(std::make_unique<model<F>>(std::move(f))) {}

  explicit operator bool() const noexcept { return impl_ != nullptr; }
  R operator()(Args... a) { return impl_->call(std::forward<Args>(a)...); }

 private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual R call(Args... a) = 0;
  };
  template <class F>
  struct model final : concept_t {
    explicit model(F&& f) : f(std::move(f)) {}
    R call(Args... a) override { return f(std::forward<Args>(a)...); }
    F f;
  };
  std::unique_ptr<concept_t> impl_;
};

}  // namespace tern::transport
