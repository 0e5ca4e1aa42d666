#include "common/shape_string.h"

namespace t4g {

std::string shape_string(c10::IntArrayRef shape, const char* separator) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? separator : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace t4g
