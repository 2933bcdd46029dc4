// A move-only type-erased callable (std::move_only_function arrives in C++23).
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace tern::transport {

template <class Sig>
class unique_function;

/// Owns any callable, including move-only completion handlers. Callables of
/// up to 64 bytes are stored inline (a coroutine's completion handler fits),
/// larger ones on the heap. Empty when default-constructed or moved from.
template <class R, class... Args>
class unique_function<R(Args...)> {
 public:
  unique_function() = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, unique_function>>>
  unique_function(F f) {  // NOLINT(google-explicit-constructor)
    if constexpr (sizeof(inline_model<F>) <= sizeof(storage_) &&
                  alignof(inline_model<F>) <= alignof(std::max_align_t) &&
                  std::is_nothrow_move_constructible_v<F>) {
      impl_ = ::new (static_cast<void*>(&storage_)) inline_model<F>(std::move(f));
    } else {
      impl_ = new heap_model<F>(std::move(f));
    }
  }
  unique_function(unique_function&& o) noexcept { take(o); }
  unique_function& operator=(unique_function&& o) noexcept {
    if (this != &o) {
      reset();
      take(o);
    }
    return *this;
  }
  unique_function(const unique_function&) = delete;
  unique_function& operator=(const unique_function&) = delete;
  ~unique_function() { reset(); }

  explicit operator bool() const noexcept { return impl_ != nullptr; }
  R operator()(Args... a) { return impl_->call(std::forward<Args>(a)...); }

 private:
  struct concept_t {
    virtual R call(Args... a) = 0;
    /// Moves into `to` (inline) or hands over the heap object; returns the new impl.
    virtual concept_t* move_to(void* to) noexcept = 0;
    virtual void destroy() noexcept = 0;

   protected:
    ~concept_t() = default;
  };
  template <class F>
  struct inline_model final : concept_t {
    explicit inline_model(F&& f) : f(std::move(f)) {}
    R call(Args... a) override { return f(std::forward<Args>(a)...); }
    concept_t* move_to(void* to) noexcept override {
      auto* moved = ::new (to) inline_model(std::move(f));
      this->~inline_model();
      return moved;
    }
    void destroy() noexcept override { this->~inline_model(); }
    F f;
  };
  template <class F>
  struct heap_model final : concept_t {
    explicit heap_model(F&& f) : f(std::move(f)) {}
    R call(Args... a) override { return f(std::forward<Args>(a)...); }
    concept_t* move_to(void*) noexcept override { return this; }
    void destroy() noexcept override { delete this; }
    F f;
  };

  void take(unique_function& o) noexcept {
    if (o.impl_) impl_ = o.impl_->move_to(&storage_);
    o.impl_ = nullptr;
  }
  void reset() noexcept {
    if (impl_) impl_->destroy();
    impl_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char storage_[64];
  concept_t* impl_ = nullptr;
};

}  // namespace tern::transport
