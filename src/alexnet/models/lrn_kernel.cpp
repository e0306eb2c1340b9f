// Fused local response normalisation across channels (paper section 3.3), forward and backward,
// for CPU tensors laid out as (N, C, S) with any element strides (NCHW and NHWC both fit).
//
//   d_c = k + alpha_n * sum_{c' = c - lo}^{c + hi} a_{c'}^2        (alpha_n = alpha / size)
//   b_c = a_c * d_c^-beta
//   da_i = g_i * d_i^-beta - 2 * alpha_n * beta * a_i * sum_{c : i in window(c)} g_c * b_c / d_c
//
// The window never leaves a group of C / groups channels (the paper's towers). Work is split in
// tiles of TILE positions of one image and one group; a tile is copied into small fp32 (fp64 for
// double) buffers, so every step vectorises and stays in L1 and each tensor is read or written
// once. Storage may be float, double or bfloat16 (raw uint16). The layout must be NCHW
// (s_stride 1) or NHWC (c_stride 1), both dense. Built and loaded by lrn.py.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t TILE = 16;

struct Bf16 {
  uint16_t bits;
};

inline float load(const float* p, int64_t i) { return p[i]; }
inline double load(const double* p, int64_t i) { return p[i]; }
inline float load(const Bf16* p, int64_t i) {
  uint32_t u = static_cast<uint32_t>(p[i].bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(double* p, int64_t i, double v) { p[i] = v; }
inline void store(Bf16* p, int64_t i, float v) {  // round to nearest even, NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    p[i].bits = static_cast<uint16_t>((u >> 16) | 0x40u);
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  p[i].bits = static_cast<uint16_t>(u >> 16);
}

template <class A, bool THREE_QUARTERS>
inline A neg_pow(A d, A beta) {  // d^-beta; beta = 3/4 (every AlexNet variant) avoids exp/log
  if constexpr (THREE_QUARTERS) {
    const A r = std::sqrt(d);
    return A(1) / (r * std::sqrt(r));
  } else {
    return std::pow(d, -beta);
  }
}

struct Shape {
  int64_t n, c, s, groups;  // logical (N, C, S) and the channel groups
  int64_t n_stride, c_stride, s_stride;
  int64_t size, lo, hi;  // window: channels c - lo .. c + hi (lo >= hi)
};

// One tile: TILE positions of one image and one group, copied into buffers of `rows` padded
// channel rows (lo zero rows on each side of the group's cg channels). The buffer layout follows
// the tensor's: channel-major ([row][position], `cs` = TILE) for NCHW, position-major
// ([position][row], `cs` = 1) for NHWC, so copies in and out run over contiguous memory, and a
// window over channels is a sum of the buffer shifted by multiples of `cs`.
struct Tile {
  int64_t base, width;  // offset of (n, first channel of the group, s0); positions in the tile
  int64_t cg, rows, cs, ps;  // channels, padded rows, buffer strides of a channel and a position
};

inline Tile tile_at(const Shape& sh, int64_t t) {
  const int64_t per_plane = (sh.s + TILE - 1) / TILE;
  const int64_t s0 = (t % per_plane) * TILE;
  const int64_t ng = t / per_plane;
  const int64_t cg = sh.c / sh.groups, rows = cg + 2 * sh.lo;
  const bool nhwc = sh.c_stride == 1;
  return {(ng / sh.groups) * sh.n_stride + (ng % sh.groups) * cg * sh.c_stride + s0 * sh.s_stride,
          sh.s - s0 < TILE ? sh.s - s0 : TILE,
          cg,
          rows,
          nhwc ? 1 : TILE,
          nhwc ? rows : 1};
}

template <class T, class A>
void gather(const Shape& sh, const Tile& tl, const T* src, A* __restrict__ buf) {
  std::memset(buf, 0, sizeof(A) * tl.rows * TILE);
  A* first = buf + sh.lo * tl.cs;
  if (tl.cs == 1) {
    for (int64_t j = 0; j < tl.width; ++j)
      for (int64_t c = 0; c < tl.cg; ++c) first[j * tl.ps + c] = load(src, tl.base + j * sh.s_stride + c);
  } else {
    for (int64_t c = 0; c < tl.cg; ++c)
      for (int64_t j = 0; j < tl.width; ++j) first[c * tl.cs + j] = load(src, tl.base + c * sh.c_stride + j);
  }
}

template <class T, class A>
void scatter(const Shape& sh, const Tile& tl, const A* __restrict__ buf, T* dst) {
  const A* first = buf + sh.lo * tl.cs;
  if (tl.cs == 1) {
    for (int64_t j = 0; j < tl.width; ++j)
      for (int64_t c = 0; c < tl.cg; ++c) store(dst, tl.base + j * sh.s_stride + c, first[j * tl.ps + c]);
  } else {
    for (int64_t c = 0; c < tl.cg; ++c)
      for (int64_t j = 0; j < tl.width; ++j) store(dst, tl.base + c * sh.c_stride + j, first[c * tl.cs + j]);
  }
}

// out[f] = sum_{d = -before}^{after} in[f + d * cs] for f in [lo * cs, end): a window sum over
// channels (entries whose window leaves a buffer row are padding and never read back).
template <class A>
void window(const Shape& sh, const Tile& tl, int64_t before, int64_t after, const A* __restrict__ in,
            A* __restrict__ out) {
  const int64_t f0 = sh.lo * tl.cs, f1 = tl.rows * TILE - sh.lo * tl.cs;
  for (int64_t f = f0; f < f1; ++f) out[f] = in[f - before * tl.cs];
  for (int64_t d = 1 - before; d <= after; ++d) {
    const A* shifted = in + d * tl.cs;
    for (int64_t f = f0; f < f1; ++f) out[f] += shifted[f];
  }
}

// Scratch per thread: five buffers of one tile.
template <class A>
struct Scratch {
  std::vector<A> mem;
  A *a, *g, *sq, *s, *p;
  Scratch(const Shape& sh) : mem(5 * (sh.c / sh.groups + 2 * sh.lo) * TILE) {
    const int64_t n = mem.size() / 5;
    a = mem.data();
    g = a + n;
    sq = g + n;
    s = sq + n;
    p = s + n;
  }
};

template <class T, class A, bool Q>
void forward(const Shape& sh, const T* x, T* y, A alpha_n, A beta, A k, int64_t t0, int64_t t1) {
  Scratch<A> m(sh);
  A *__restrict__ a = m.a, *__restrict__ sq = m.sq, *__restrict__ s = m.s, *__restrict__ out = m.p;
  for (int64_t t = t0; t < t1; ++t) {
    const Tile tl = tile_at(sh, t);
    const int64_t n = tl.rows * TILE, f0 = sh.lo * tl.cs, f1 = n - f0;
    gather(sh, tl, x, a);
    for (int64_t f = 0; f < n; ++f) sq[f] = a[f] * a[f];
    window(sh, tl, sh.lo, sh.hi, sq, s);
    for (int64_t f = f0; f < f1; ++f) out[f] = a[f] * neg_pow<A, Q>(k + alpha_n * s[f], beta);
    scatter(sh, tl, out, y);
  }
}

template <class T, class A, bool Q>
void backward(const Shape& sh, const T* x, const T* g, T* dx, A alpha_n, A beta, A k, int64_t t0,
              int64_t t1) {
  const A coef = A(2) * alpha_n * beta;
  Scratch<A> m(sh);
  A *__restrict__ a = m.a, *__restrict__ ga = m.g, *__restrict__ sq = m.sq, *__restrict__ s = m.s,
    *__restrict__ p = m.p;
  for (int64_t t = t0; t < t1; ++t) {
    const Tile tl = tile_at(sh, t);
    const int64_t n = tl.rows * TILE, f0 = sh.lo * tl.cs, f1 = n - f0;
    gather(sh, tl, x, a);
    gather(sh, tl, g, ga);
    for (int64_t f = 0; f < n; ++f) sq[f] = a[f] * a[f];
    window(sh, tl, sh.lo, sh.hi, sq, s);
    // u = g * b / d (in sq's place); a padding entry must read 0 even where d is 0.
    for (int64_t f = f0; f < f1; ++f) {
      const A d = k + alpha_n * s[f];
      p[f] = neg_pow<A, Q>(d, beta);
      sq[f] = a[f] == A(0) ? A(0) : ga[f] * a[f] * p[f] / d;
    }
    // i is in window(c) exactly when c is in i - hi .. i + lo: the transposed window.
    window(sh, tl, sh.hi, sh.lo, sq, s);
    for (int64_t f = f0; f < f1; ++f) p[f] = ga[f] * p[f] - coef * a[f] * s[f];
    scatter(sh, tl, p, dx);
  }
}

template <class T, class A>
void forward_any(const Shape& sh, const void* x, void* y, double alpha_n, double beta, double k,
                 int64_t t0, int64_t t1) {
  const auto* xs = static_cast<const T*>(x);
  auto* ys = static_cast<T*>(y);
  if (beta == 0.75)
    forward<T, A, true>(sh, xs, ys, A(alpha_n), A(beta), A(k), t0, t1);
  else
    forward<T, A, false>(sh, xs, ys, A(alpha_n), A(beta), A(k), t0, t1);
}

template <class T, class A>
void backward_any(const Shape& sh, const void* x, const void* g, void* dx, double alpha_n,
                  double beta, double k, int64_t t0, int64_t t1) {
  const auto* xs = static_cast<const T*>(x);
  const auto* gs = static_cast<const T*>(g);
  auto* dxs = static_cast<T*>(dx);
  if (beta == 0.75)
    backward<T, A, true>(sh, xs, gs, dxs, A(alpha_n), A(beta), A(k), t0, t1);
  else
    backward<T, A, false>(sh, xs, gs, dxs, A(alpha_n), A(beta), A(k), t0, t1);
}

}  // namespace

extern "C" {

// dims = {N, C, S, groups, n_stride, c_stride, s_stride, size}; tiles [t0, t1) of
// lrn_num_tiles(dims); dtype 0 = float32, 1 = float64, 2 = bfloat16.
int64_t lrn_num_tiles(const int64_t* dims) {
  return dims[0] * dims[3] * ((dims[2] + TILE - 1) / TILE);
}

static Shape make_shape(const int64_t* d) {
  return {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[7] / 2, (d[7] - 1) / 2};
}

int lrn_forward(int dtype, const int64_t* dims, const void* x, void* y, double alpha_n,
                double beta, double k, int64_t t0, int64_t t1) {
  const Shape sh = make_shape(dims);
  if (dtype == 0)
    forward_any<float, float>(sh, x, y, alpha_n, beta, k, t0, t1);
  else if (dtype == 1)
    forward_any<double, double>(sh, x, y, alpha_n, beta, k, t0, t1);
  else if (dtype == 2)
    forward_any<Bf16, float>(sh, x, y, alpha_n, beta, k, t0, t1);
  else
    return 1;
  return 0;
}

int lrn_backward(int dtype, const int64_t* dims, const void* x, const void* g, void* dx,
                 double alpha_n, double beta, double k, int64_t t0, int64_t t1) {
  const Shape sh = make_shape(dims);
  if (dtype == 0)
    backward_any<float, float>(sh, x, g, dx, alpha_n, beta, k, t0, t1);
  else if (dtype == 1)
    backward_any<double, double>(sh, x, g, dx, alpha_n, beta, k, t0, t1);
  else if (dtype == 2)
    backward_any<Bf16, float>(sh, x, g, dx, alpha_n, beta, k, t0, t1);
  else
    return 1;
  return 0;
}

}  // extern "C"
