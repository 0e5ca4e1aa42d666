// CUDA kernels of the per-head LayerNorm (see head_layer_norm_kernels.h). One warp per row: a row
// of 64 bf16 values is two values per lane, mean and variance come from warp shuffles, and no
// block-wide synchronisation is needed. ATen's LayerNorm gives every row a whole block, which for
// rows this short leaves most threads idle (issue 3's profile: 14% of a 2B forward).
#include "models/cuda/head_layer_norm_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

namespace t4g::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
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

// Lane l holds elements l, l + 32, ..., l + 32 (K - 1) of its row: for each k the warp reads 32
// consecutive values (coalesced).
template <typename T, int K>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ bias,
                               T* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ rstd_out,
                               int64_t rows, int d, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  float w[K], b[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int j = lane + 32 * k;
    w[k] = j < d ? to_float(weight[j]) : 0.f;
    b[k] = j < d ? to_float(bias[j]) : 0.f;
  }
  const float inv_d = 1.f / static_cast<float>(d);
  for (int64_t r = first; r < rows; r += stride) {
    const T* row = x + r * d;
    float v[K];
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int j = lane + 32 * k;
      v[k] = j < d ? to_float(row[j]) : 0.f;
      sum += v[k];
    }
    const float mean = warp_sum(sum) * inv_d;
    float sq = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int j = lane + 32 * k;
      const float c = j < d ? v[k] - mean : 0.f;
      sq += c * c;
    }
    const float rstd = rsqrtf(warp_sum(sq) * inv_d + eps);
    T* out = y + r * d;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int j = lane + 32 * k;
      if (j < d) out[j] = from_float<T>((v[k] - mean) * rstd * w[k] + b[k]);
    }
    if (lane == 0) {
      mean_out[r] = mean;
      rstd_out[r] = rstd;
    }
  }
}

// dx = rstd (g - mean(g) - xhat mean(g xhat)) with g = dy * weight; each warp also accumulates
// dy * xhat and dy over its rows, then the block sums its warps into one partial row.
template <typename T, int K>
__global__ void backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ weight,
                                const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ dx,
                                float* __restrict__ dweight_partial, float* __restrict__ dbias_partial, int64_t rows,
                                int d) {
  __shared__ float shared_w[kWarpsPerBlock][kHeadNormMaxDim];
  __shared__ float shared_b[kWarpsPerBlock][kHeadNormMaxDim];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  float w[K], acc_w[K], acc_b[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int j = lane + 32 * k;
    w[k] = j < d ? to_float(weight[j]) : 0.f;
    acc_w[k] = 0.f;
    acc_b[k] = 0.f;
  }
  const float inv_d = 1.f / static_cast<float>(d);
  for (int64_t r = first; r < rows; r += stride) {
    const T* xr = x + r * d;
    const T* gr = dy + r * d;
    const float m = mean[r];
    const float rs = rstd[r];
    float xhat[K], gw[K];
    float s1 = 0.f, s2 = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int j = lane + 32 * k;
      const float g = j < d ? to_float(gr[j]) : 0.f;
      xhat[k] = j < d ? (to_float(xr[j]) - m) * rs : 0.f;
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
      if (j < d) out[j] = from_float<T>(rs * (gw[k] - c1 - xhat[k] * c2));
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
  return std::max<int64_t>(1, std::min(kMaxForwardBlocks, (rows + kWarpsPerBlock - 1) / kWarpsPerBlock));
}

template <typename T, int K>
void launch_forward(const void* x, const void* w, const void* b, void* y, float* mean, float* rstd, int64_t rows, int d,
                    float eps, cudaStream_t stream) {
  forward_kernel<T, K><<<static_cast<unsigned>(forward_blocks(rows)), kWarpsPerBlock * 32, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(y), mean, rstd,
      rows, d, eps);
}

template <typename T, int K>
void launch_backward(const void* dy, const void* x, const void* w, const float* mean, const float* rstd, void* dx,
                     float* dw, float* db, int64_t rows, int d, cudaStream_t stream) {
  backward_kernel<T, K><<<static_cast<unsigned>(head_norm_backward_blocks(rows)), kWarpsPerBlock * 32, 0, stream>>>(
      static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), mean, rstd, static_cast<T*>(dx),
      dw, db, rows, d);
}

// The launches as callables for dispatch (member templates cannot live in function-local classes).
struct ForwardLaunch {
  const void *x, *w, *b;
  void* y;
  float *mean, *rstd;
  int64_t rows;
  int d;
  float eps;
  cudaStream_t stream;
  template <typename T, int K>
  void operator()() const {
    launch_forward<T, K>(x, w, b, y, mean, rstd, rows, d, eps, stream);
  }
};

struct BackwardLaunch {
  const void *dy, *x, *w;
  const float *mean, *rstd;
  void* dx;
  float *dw, *db;
  int64_t rows;
  int d;
  cudaStream_t stream;
  template <typename T, int K>
  void operator()() const {
    launch_backward<T, K>(dy, x, w, mean, rstd, dx, dw, db, rows, d, stream);
  }
};

// Calls f.template operator()<T, K>() for the element type and the smallest K with 32 K >= d.
template <typename F>
const char* dispatch(ElementType type, int d, const F& f) {
  if (d < 1 || d > kHeadNormMaxDim) return "head_norm: row width outside [1, 256]";
  auto by_k = [&](auto tag) {
    using T = decltype(tag);
    if (d <= 32) {
      f.template operator()<T, 1>();
    } else if (d <= 64) {
      f.template operator()<T, 2>();
    } else if (d <= 128) {
      f.template operator()<T, 4>();
    } else {
      f.template operator()<T, 8>();
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
  return std::max<int64_t>(1, std::min(kMaxBackwardBlocks, (rows + kWarpsPerBlock - 1) / kWarpsPerBlock));
}

const char* head_norm_forward(ElementType type, const void* x, const void* weight, const void* bias, void* y,
                              float* mean, float* rstd, int64_t rows, int d, float eps, void* stream) {
  if (rows == 0) return nullptr;
  const ForwardLaunch launch{x, weight, bias, y, mean, rstd, rows, d, eps, static_cast<cudaStream_t>(stream)};
  return dispatch(type, d, launch);
}

const char* head_norm_backward(ElementType type, const void* dy, const void* x, const void* weight, const float* mean,
                               const float* rstd, void* dx, float* dweight_partial, float* dbias_partial, int64_t rows,
                               int d, void* stream) {
  if (rows == 0) return nullptr;
  const BackwardLaunch launch{dy,   x,    weight, mean, rstd, dx, dweight_partial, dbias_partial,
                              rows, d, static_cast<cudaStream_t>(stream)};
  return dispatch(type, d, launch);
}

}  // namespace t4g::cuda
