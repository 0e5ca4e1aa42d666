// What every benchmark program needs around a timed region: wait for the device, reset and read
// the allocator's peak, name the device. One copy here instead of one per bench/*.cpp.
#pragma once

#include <sys/resource.h>
#include <torch/torch.h>

#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdint>
#include <string>

#if __has_include(<cuda_runtime_api.h>)
#include <ATen/cuda/CUDAContext.h>
#define T4G_BENCH_HAVE_CUDA_RUNTIME 1
#endif

namespace t4g::bench {

inline c10::DeviceIndex cuda_index(const torch::Device& device) { return device.index() < 0 ? 0 : device.index(); }

// Waits for the device's queued work (no-op on the CPU).
inline void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(cuda_index(device));
}

// Waits for the work queued on the device's current CUDA stream only (no-op on the CPU). Unlike
// synchronize(), collectives running on NCCL's own streams carry on, so a timer read after it
// measures the compute the stream ran, not the communication overlapping it.
inline void synchronize_stream(const torch::Device& device) {
#ifdef T4G_BENCH_HAVE_CUDA_RUNTIME
  if (device.is_cuda()) {
    c10::cuda::getCurrentCUDAStream(cuda_index(device)).synchronize();
    return;
  }
#endif
  synchronize(device);
}

// Resets the CUDA allocator's peak statistics (no-op on the CPU).
inline void reset_peak(const torch::Device& device) {
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(device));
}

// Peak bytes allocated by tensors on the GPU since reset_peak (torch.cuda.max_memory_allocated);
// -1 on the CPU.
inline int64_t peak_bytes(const torch::Device& device) {
  if (!device.is_cuda()) return -1;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index(device));
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
}

// peak_bytes on the GPU; on the CPU the process's peak resident set size.
inline int64_t peak_bytes_or_rss(const torch::Device& device) {
  if (device.is_cuda()) return peak_bytes(device);
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// "NVIDIA H200" on a GPU, "cpu (N threads)" otherwise.
inline std::string device_name(const torch::Device& device) {
#ifdef T4G_BENCH_HAVE_CUDA_RUNTIME
  if (device.is_cuda()) return at::cuda::getDeviceProperties(cuda_index(device))->name;
#endif
  return "cpu (" + std::to_string(torch::get_num_threads()) + " threads)";
}

}  // namespace t4g::bench
