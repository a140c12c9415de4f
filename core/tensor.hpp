// Shapes, non-owning views and owning tensors. Everything is dense and row-major:
// the last dimension is contiguous. Layer activations are time-major, (T,B,...),
// so that the slice for one step t is one contiguous block of B rows.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "mtp/core/error.hpp"

namespace mtp {

using index_t = std::int64_t;

class Shape {
 public:
  static constexpr int kMaxRank = 4;

  Shape() = default;
  Shape(std::initializer_list<index_t> dims) {
    MTP_CHECK(dims.size() <= kMaxRank, "shape of rank {} exceeds {}", dims.size(), kMaxRank);
    for (index_t d : dims) dims_[rank_++] = d;
  }
  static Shape from(const std::vector<index_t>& dims) {
    MTP_CHECK(dims.size() <= kMaxRank, "shape of rank {} exceeds {}", dims.size(), kMaxRank);
    Shape s;
    for (index_t d : dims) s.dims_[s.rank_++] = d;
    return s;
  }

  int rank() const { return rank_; }
  index_t operator[](int i) const { return dims_[i]; }
  index_t numel() const {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  std::vector<index_t> dims() const { return {dims_.begin(), dims_.begin() + rank_}; }
  // Shape without the first dimension: the shape of one slice along dim 0.
  Shape tail() const {
    Shape s;
    for (int i = 1; i < rank_; ++i) s.dims_[s.rank_++] = dims_[i];
    return s;
  }

  bool operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (dims_[i] != o.dims_[i]) return false;
    return true;
  }
  std::string str() const;

 private:
  std::array<index_t, kMaxRank> dims_{};
  int rank_ = 0;
};

inline std::string shape_str(const std::vector<index_t>& dims);
inline std::string Shape::str() const {
  return shape_str(dims());
}

// A non-owning view. View<const S> reads, View<S> writes.
template <class S>
struct View {
  S* data = nullptr;
  Shape shape;

  View() = default;
  View(S* d, Shape s) : data(d), shape(s) {}
  // A writable view converts to a read-only one.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, S> && !std::is_same_v<U, S>>>
  View(const View<U>& o) : data(o.data), shape(o.shape) {}

  bool empty() const { return data == nullptr; }
  index_t numel() const { return shape.numel(); }
  index_t dim(int i) const { return shape[i]; }
  S& operator[](index_t i) const { return data[i]; }
  S* begin() const { return data; }
  S* end() const { return data + numel(); }
  // The i-th slice along dimension 0.
  View slice(index_t i) const {
    Shape t = shape.tail();
    return View(data + i * t.numel(), t);
  }
  // Rows [from, to) along dimension 0.
  View rows(index_t from, index_t to) const {
    std::vector<index_t> d = shape.dims();
    index_t inner = shape.numel() / d[0];
    d[0] = to - from;
    return View(data + from * inner, Shape::from(d));
  }
  View reshaped(Shape s) const {
    MTP_CHECK(s.numel() == numel(), "cannot view {} as {}", shape.str(), s.str());
    return View(data, s);
  }
};

template <class S>
using CView = View<const S>;

// A read-only view parameter that does not take part in template argument deduction:
// op templates deduce S from their writable outputs, so callers may pass a View<S>,
// a CView<S> or a Tensor<S> for the inputs.
template <class S>
using In = std::type_identity_t<CView<S>>;

// Owning dense tensor. Resizing keeps the allocation when it is large enough, so
// layers can size their workspaces on every forward without reallocating.
template <class S>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape s, S fill = S(0)) : shape_(s), buf_(s.numel(), fill) {}

  void resize(Shape s) {
    shape_ = s;
    if (static_cast<index_t>(buf_.size()) < s.numel()) buf_.resize(s.numel());
  }
  void zero() { std::fill(buf_.begin(), buf_.begin() + shape_.numel(), S(0)); }

  const Shape& shape() const { return shape_; }
  index_t numel() const { return shape_.numel(); }
  S* data() { return buf_.data(); }
  const S* data() const { return buf_.data(); }
  S& operator[](index_t i) { return buf_[i]; }
  const S& operator[](index_t i) const { return buf_[i]; }
  View<S> view() { return {buf_.data(), shape_}; }
  CView<S> view() const { return {buf_.data(), shape_}; }
  operator View<S>() { return view(); }
  operator CView<S>() const { return view(); }

 private:
  Shape shape_;
  std::vector<S> buf_;
};

inline std::string shape_str(const std::vector<index_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(dims[i]);
  }
  return s + ")";
}

inline void check_shape(const Shape& got, const Shape& want, const char* what) {
  MTP_CHECK(got == want, "{} has shape {}, expected {}", what, got.str(), want.str());
}

}  // namespace mtp
