// Random streams. Every random draw in t4g comes from an explicit generator seeded from
// (base seed, stream ids such as rank and step), never from a global one, so a run is
// reproducible, ranks draw different noise, and a resumed run continues exactly.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <initializer_list>

namespace t4g {

// splitmix64 finaliser: a bijective 64-bit mix with good avalanche.
uint64_t splitmix64(uint64_t x);

// A seed for the stream identified by `ids` (e.g. {rank, step}) under `seed`. Different id lists
// give statistically independent seeds; the same list always gives the same seed.
uint64_t derive_seed(uint64_t seed, std::initializer_list<uint64_t> ids);

// A torch generator for `device` (CPU or CUDA) seeded with derive_seed(seed, ids).
torch::Generator make_generator(uint64_t seed, std::initializer_list<uint64_t> ids,
                                const torch::Device& device = torch::kCPU);

}  // namespace t4g
