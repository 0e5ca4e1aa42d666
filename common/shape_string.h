// Tensor shapes as text for error messages ("[2, 3, 4]"), in one place instead of one copy per file.
#pragma once

#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>

namespace t4g {

// "[2, 3, 4]" with the default separator; "[2,3,4]" with "," (the safetensors header spelling).
std::string shape_string(c10::IntArrayRef shape, const char* separator = ", ");

}  // namespace t4g
