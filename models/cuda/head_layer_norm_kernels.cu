// CUDA kernels of the per-head LayerNorm (see head_layer_norm_kernels.h). One warp per row: a row
// of 64 bf16 values is two values per lane, mean and variance come from warp shuffles, and no
// block-wide synchronisation is needed. ATen's LayerNorm gives every row a whole block, which for
// rows this short leaves most threads idle (issue 3's profile: 14% of a 2B forward).
#include "models/cuda/head_layer_norm_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

namespace t4g::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kRowsPerWarp = 4;  // rows whose loads a warp has in flight together
constexpr int64_t kMaxForwardBlocks = int64_t{1} << 20;
constexpr int64_t kMaxBackwardBlocks = 1024;

// float, __nv_bfloat16 and __half all convert to float and back (round to nearest) by cast.
template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <typename T>
__device__ __forceinline__ T from_float(float v) {
  return T(v);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The RoPE table row of row r; negative for text tokens, which are not rotated.
__device__ __forceinline__ int64_t rope_row(const HeadRope& rope, int64_t r) {
  const int64_t token = (r / rope.heads) % rope.seq;
  return token - rope.text_len;
}

// Element j's partner in its (2i, 2i + 1) pair is element j ^ 1, held by lane ^ 1 at the same k
// (32 k is even), so one shuffle brings it. Every lane must call this (full-warp shuffle).
__device__ __forceinline__ float pair_partner(float v) { return __shfl_xor_sync(0xffffffffu, v, 1); }

// Rotates row r's values held by this lane (elements lane + 32 k) by its RoPE table row; text
// rows are left alone. The forward rotation, or with kTranspose its transpose (the backward):
//   forward    out[2i] = v[2i] c[2i] - v[2i+1] s[2i]          out[2i+1] = v[2i+1] c[2i+1] + v[2i] s[2i+1]
//   transpose  out[2i] = v[2i] c[2i] + v[2i+1] s[2i+1]        out[2i+1] = v[2i+1] c[2i+1] - v[2i] s[2i]
// Called by the whole warp (the shuffle needs every lane; the row is the same for all lanes).
template <int K, bool kTranspose>
__device__ __forceinline__ void rotate_row(float (&v)[K], const HeadRope& rope, int64_t r, int lane, int d) {
  const int64_t t = rope_row(rope, r);
  if (t < 0) return;
  const float* cr = rope.cos + t * d;
  const float* sr = rope.sin + t * d;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int j = lane + 32 * k;
    const bool odd = (j & 1) != 0;
    if (kTranspose) {
      const float partner = pair_partner(j < d ? v[k] * sr[j] : 0.f);  // the partner's v s
      if (j < d) v[k] = v[k] * cr[j] + (odd ? -partner : partner);
    } else {
      const float partner = pair_partner(v[k]);
      if (j < d) v[k] = v[k] * cr[j] + (odd ? partner : -partner) * sr[j];
    }
  }
}

// Lane l holds elements l, l + 32, ..., l + 32 (K - 1) of its row: for each k the warp reads 32
// consecutive values (coalesced). A warp takes kRowsPerWarp rows at a time and issues all their
// loads before any arithmetic: with one row in flight a warp has only 128 bytes outstanding, too
// little to cover memory latency (the one-row version ran at about a quarter of bandwidth).
// With kRope, the normalised row is rotated before it is stored.
template <typename T, int K, bool kRope>
__global__ void head_layer_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ weight,
                                               const T* __restrict__ bias, T* __restrict__ y,
                                               float* __restrict__ mean_out, float* __restrict__ rstd_out, int64_t rows,
                                               int d, float eps, HeadRope rope) {
  const int lane = threadIdx.x & 31;
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5)) * kRowsPerWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock * kRowsPerWarp;
  float w[K], b[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int j = lane + 32 * k;
    w[k] = j < d ? to_float(weight[j]) : 0.f;
    b[k] = j < d ? to_float(bias[j]) : 0.f;
  }
  const float inv_d = 1.f / static_cast<float>(d);
  for (int64_t r0 = first; r0 < rows; r0 += stride) {
    float v[kRowsPerWarp][K];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const T* row = x + (r0 + i) * d;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int j = lane + 32 * k;
        v[i][k] = j < d && r0 + i < rows ? to_float(row[j]) : 0.f;
      }
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int64_t r = r0 + i;
      if (r >= rows) break;  // uniform across the warp
      float sum = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) sum += v[i][k];
      const float mean = warp_sum(sum) * inv_d;
      float sq = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int j = lane + 32 * k;
        const float c = j < d ? v[i][k] - mean : 0.f;
        sq += c * c;
      }
      const float rstd = rsqrtf(warp_sum(sq) * inv_d + eps);
      float o[K];
#pragma unroll
      for (int k = 0; k < K; ++k) o[k] = (v[i][k] - mean) * rstd * w[k] + b[k];
      if (kRope) rotate_row<K, false>(o, rope, r, lane, d);
      T* out = y + r * d;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int j = lane + 32 * k;
        if (j < d) out[j] = from_float<T>(o[k]);
      }
      if (lane == 0) {
        mean_out[r] = mean;
        rstd_out[r] = rstd;
      }
    }
  }
}

// dx = rstd (gw - mean(gw) - xhat mean(gw xhat)) with gw = g * weight; each warp also
// accumulates g * xhat and g over its rows, then the block sums its warps into one partial row.
// g is dy, or with kRope dy rotated back: g[2i] = dy[2i] cos[2i] + dy[2i + 1] sin[2i + 1] and
// g[2i + 1] = dy[2i + 1] cos[2i + 1] - dy[2i] sin[2i] (the transpose of the forward rotation).
template <typename T, int K, bool kRope>
__global__ void head_layer_norm_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                const T* __restrict__ weight, const float* __restrict__ mean,
                                                const float* __restrict__ rstd, T* __restrict__ dx,
                                                float* __restrict__ dweight_partial, float* __restrict__ dbias_partial,
                                                int64_t rows, int d, HeadRope rope) {
  __shared__ float shared_w[kWarpsPerBlock][kHeadNormMaxDim];
  __shared__ float shared_b[kWarpsPerBlock][kHeadNormMaxDim];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp) * kRowsPerWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock * kRowsPerWarp;
  float w[K], acc_w[K], acc_b[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int j = lane + 32 * k;
    w[k] = j < d ? to_float(weight[j]) : 0.f;
    acc_w[k] = 0.f;
    acc_b[k] = 0.f;
  }
  const float inv_d = 1.f / static_cast<float>(d);
  for (int64_t r0 = first; r0 < rows; r0 += stride) {
    // All loads of kRowsPerWarp rows first (see head_layer_norm_forward_kernel).
    float gk[kRowsPerWarp][K], xk[kRowsPerWarp][K], m[kRowsPerWarp], rs[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int64_t r = r0 + i;
      const bool in = r < rows;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int j = lane + 32 * k;
        gk[i][k] = in && j < d ? to_float(dy[r * d + j]) : 0.f;
        xk[i][k] = in && j < d ? to_float(x[r * d + j]) : 0.f;
      }
      m[i] = in ? mean[r] : 0.f;
      rs[i] = in ? rstd[r] : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int64_t r = r0 + i;
      if (r >= rows) break;  // uniform across the warp
      if (kRope) rotate_row<K, true>(gk[i], rope, r, lane, d);
      float xhat[K], gw[K];
      float s1 = 0.f, s2 = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int j = lane + 32 * k;
        const float g = gk[i][k];
        xhat[k] = j < d ? (xk[i][k] - m[i]) * rs[i] : 0.f;
        gw[k] = g * w[k];
        s1 += gw[k];
        s2 += gw[k] * xhat[k];
        acc_w[k] += g * xhat[k];
        acc_b[k] += g;
      }
      const float c1 = warp_sum(s1) * inv_d;
      const float c2 = warp_sum(s2) * inv_d;
      T* out = dx + r * d;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int j = lane + 32 * k;
        if (j < d) out[j] = from_float<T>(rs[i] * (gw[k] - c1 - xhat[k] * c2));
      }
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int j = lane + 32 * k;
    if (j < d) {
      shared_w[warp][j] = acc_w[k];
      shared_b[warp][j] = acc_b[k];
    }
  }
  __syncthreads();
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float sw = 0.f, sb = 0.f;
    for (int i = 0; i < kWarpsPerBlock; ++i) {
      sw += shared_w[i][j];
      sb += shared_b[i][j];
    }
    dweight_partial[static_cast<int64_t>(blockIdx.x) * d + j] = sw;
    dbias_partial[static_cast<int64_t>(blockIdx.x) * d + j] = sb;
  }
}

int64_t forward_blocks(int64_t rows) {
  constexpr int64_t rows_per_block = kWarpsPerBlock * kRowsPerWarp;
  return std::max<int64_t>(1, std::min(kMaxForwardBlocks, (rows + rows_per_block - 1) / rows_per_block));
}

template <typename T, int K>
void launch_forward(const void* x, const void* w, const void* b, void* y, float* mean, float* rstd, int64_t rows, int d,
                    float eps, const HeadRope* rope, cudaStream_t stream) {
  const auto grid = static_cast<unsigned>(forward_blocks(rows));
  auto kernel =
      rope != nullptr ? head_layer_norm_forward_kernel<T, K, true> : head_layer_norm_forward_kernel<T, K, false>;
  kernel<<<grid, kWarpsPerBlock * 32, 0, stream>>>(static_cast<const T*>(x), static_cast<const T*>(w),
                                                   static_cast<const T*>(b), static_cast<T*>(y), mean, rstd, rows, d,
                                                   eps, rope != nullptr ? *rope : HeadRope{});
}

template <typename T, int K>
void launch_backward(const void* dy, const void* x, const void* w, const float* mean, const float* rstd, void* dx,
                     float* dw, float* db, int64_t rows, int d, const HeadRope* rope, cudaStream_t stream) {
  const auto grid = static_cast<unsigned>(head_norm_backward_blocks(rows));
  auto kernel =
      rope != nullptr ? head_layer_norm_backward_kernel<T, K, true> : head_layer_norm_backward_kernel<T, K, false>;
  kernel<<<grid, kWarpsPerBlock * 32, 0, stream>>>(static_cast<const T*>(dy), static_cast<const T*>(x),
                                                   static_cast<const T*>(w), mean, rstd, static_cast<T*>(dx), dw, db,
                                                   rows, d, rope != nullptr ? *rope : HeadRope{});
}

// Calls f(T{}, std::integral_constant<int, K>{}) for the element type T and the smallest K with
// 32 K >= d (a generic lambda reads T and K back from its arguments' types).
template <typename F>
const char* dispatch(ElementType type, int d, const HeadRope* rope, const F& f) {
  if (d < 1 || d > kHeadNormMaxDim) return "head_norm: row width outside [1, 256]";
  if (rope != nullptr && (d % 2 != 0 || rope->heads < 1 || rope->seq <= rope->text_len || rope->text_len < 0)) {
    return "head_norm: RoPE needs an even row width and seq > text_len >= 0, heads >= 1";
  }
  auto by_k = [&](auto tag) {
    if (d <= 32) {
      f(tag, std::integral_constant<int, 1>{});
    } else if (d <= 64) {
      f(tag, std::integral_constant<int, 2>{});
    } else if (d <= 128) {
      f(tag, std::integral_constant<int, 4>{});
    } else {
      f(tag, std::integral_constant<int, 8>{});
    }
  };
  switch (type) {
    case ElementType::kFloat32:
      by_k(float{});
      break;
    case ElementType::kBFloat16:
      by_k(__nv_bfloat16{});
      break;
    case ElementType::kFloat16:
      by_k(__half{});
      break;
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

int64_t head_norm_backward_blocks(int64_t rows) {
  constexpr int64_t rows_per_block = kWarpsPerBlock * kRowsPerWarp;
  return std::max<int64_t>(1, std::min(kMaxBackwardBlocks, (rows + rows_per_block - 1) / rows_per_block));
}

const char* head_norm_forward(ElementType type, const void* x, const void* weight, const void* bias, void* y,
                              float* mean, float* rstd, int64_t rows, int d, float eps, const HeadRope* rope,
                              void* stream) {
  if (rows == 0) return nullptr;
  return dispatch(type, d, rope, [&](auto tag, auto k) {
    launch_forward<decltype(tag), decltype(k)::value>(x, weight, bias, y, mean, rstd, rows, d, eps, rope,
                                                      static_cast<cudaStream_t>(stream));
  });
}

const char* head_norm_backward(ElementType type, const void* dy, const void* x, const void* weight, const float* mean,
                               const float* rstd, void* dx, float* dweight_partial, float* dbias_partial, int64_t rows,
                               int d, const HeadRope* rope, void* stream) {
  if (rows == 0) return nullptr;
  return dispatch(type, d, rope, [&](auto tag, auto k) {
    launch_backward<decltype(tag), decltype(k)::value>(dy, x, weight, mean, rstd, dx, dweight_partial, dbias_partial,
                                                       rows, d, rope, static_cast<cudaStream_t>(stream));
  });
}

}  // namespace t4g::cuda
