// Throughput of the safetensors layer on a transformer-like checkpoint (bf16 blocks): atomic
// save, open (header validation only), zero-copy tensor access, and strict loading into fp32
// module parameters (the conversion a bf16 checkpoint needs for fp32 training).
// Prints one JSON line per measurement. Usage: safetensors_io [MB=256] [folder=/tmp]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "common/safetensors.h"
#include "common/fs.h"
#include "models/diffusers_layout.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void report(const char* what, double bytes, double seconds, int64_t tensors) {
  std::printf("{\"bench\": \"%s\", \"bytes\": %.0f, \"tensors\": %lld, \"seconds\": %.4f, \"gb_per_s\": %.3f}\n", what,
              bytes, static_cast<long long>(tensors), seconds, bytes / seconds / 1e9);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t megabytes = argc > 1 ? std::stoll(argv[1]) : 256;
  const std::string folder = argc > 2 ? argv[2] : "/tmp";
  const std::string path = folder + "/t4g_bench_safetensors_io.safetensors";
  torch::set_num_threads(1);

  // 4 MiB bf16 tensors [1024, 2048] named like transformer blocks.
  const int64_t count = std::max<int64_t>(1, megabytes / 4);
  std::map<std::string, torch::Tensor> tensors;
  auto module = std::make_shared<torch::nn::Module>();
  for (int64_t i = 0; i < count; ++i) {
    const std::string name = "block" + std::to_string(i);
    tensors[name] = torch::randn({1024, 2048}).to(torch::kBFloat16);
    module->register_parameter(name, torch::empty({1024, 2048}));
  }
  const double bytes = static_cast<double>(count) * 1024 * 2048 * 2;

  auto start = std::chrono::steady_clock::now();
  t4g::save_safetensors(path, tensors);
  report("save_bf16", bytes, seconds_since(start), count);

  start = std::chrono::steady_clock::now();
  t4g::SafetensorsFile file(path);
  report("open_validate", bytes, seconds_since(start), count);

  start = std::chrono::steady_clock::now();
  double checksum = 0;
  for (const auto& name : file.names()) checksum += file.tensor(name).data_ptr() != nullptr;
  report("tensor_zero_copy", bytes, seconds_since(start), static_cast<int64_t>(checksum));

  start = std::chrono::steady_clock::now();
  t4g::load_module_weights(*module, path);
  report("load_into_fp32_module", bytes, seconds_since(start), count);

  t4g::remove_all(path);
  return 0;
}
