#include "common/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

namespace t4g {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t derive_seed(uint64_t seed, std::initializer_list<uint64_t> ids) {
  uint64_t h = splitmix64(seed);
  for (uint64_t id : ids) h = splitmix64(h ^ splitmix64(id + 0x632BE59BD9B4E019ull));
  return h;
}

torch::Generator make_generator(uint64_t seed, std::initializer_list<uint64_t> ids, const torch::Device& device) {
  torch::Generator gen = device.is_cuda() ? at::globalContext().defaultGenerator(device).clone()
                                          : at::make_generator<at::CPUGeneratorImpl>();
  gen.set_current_seed(derive_seed(seed, ids));
  return gen;
}

}  // namespace t4g
