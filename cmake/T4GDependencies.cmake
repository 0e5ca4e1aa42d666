# Finds every dependency and gathers them in one interface target, t4g::deps.
# LibTorch comes from the torch package of ${T4G_PYTHON} (the bootstrap's virtual environment
# on CPU machines, the system python3 on GPU machines); everything else from the system.

# --- LibTorch, from the Python torch package -------------------------------------------
execute_process(
  COMMAND ${T4G_PYTHON} -c "import os, torch, torch.utils; print(torch.utils.cmake_prefix_path); print(torch.__version__); print(os.path.dirname(os.path.dirname(torch.__file__)))"
  OUTPUT_VARIABLE _t4g_torch_info OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _t4g_torch_rc ERROR_VARIABLE _t4g_torch_err)
if(NOT _t4g_torch_rc EQUAL 0)
  message(FATAL_ERROR "t4g: '${T4G_PYTHON}' cannot import torch (${_t4g_torch_err}). "
                      "Run scripts/bootstrap.sh, or pass -DT4G_PYTHON=/path/to/python-with-torch-2.11.")
endif()
string(REPLACE "\n" ";" _t4g_torch_info "${_t4g_torch_info}")
list(GET _t4g_torch_info 0 T4G_TORCH_CMAKE_PREFIX)
list(GET _t4g_torch_info 1 T4G_TORCH_VERSION)
list(GET _t4g_torch_info 2 T4G_SITE_PACKAGES)
if(NOT T4G_TORCH_VERSION MATCHES "^2\\.11\\.")
  message(WARNING "t4g is pinned to torch 2.11; found ${T4G_TORCH_VERSION}")
endif()
list(APPEND CMAKE_PREFIX_PATH ${T4G_TORCH_CMAKE_PREFIX})
# No GPU on the build machine: name Hopper (sm_90) so torch's CMake does not probe for one.
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "9.0")
endif()
find_package(Torch REQUIRED)
message(STATUS "t4g: torch ${T4G_TORCH_VERSION} from ${T4G_SITE_PACKAGES}")

# NCCL: ProcessGroupNCCL.hpp includes nccl.h, which the wheel keeps in nvidia/nccl/include.
# Use the wheel's copy (and library), never the system one: the versions differ.
set(T4G_HAVE_NCCL_INT 0)
set(_t4g_nccl_include ${T4G_SITE_PACKAGES}/nvidia/nccl/include)
if(TARGET torch_cuda AND EXISTS ${_t4g_nccl_include}/nccl.h)
  set(T4G_HAVE_NCCL_INT 1)
  file(GLOB _t4g_nccl_lib ${T4G_SITE_PACKAGES}/nvidia/nccl/lib/libnccl.so*)
  list(GET _t4g_nccl_lib 0 T4G_NCCL_LIBRARY)
  message(STATUS "t4g: NCCL from ${T4G_NCCL_LIBRARY}")
endif()

# --- System libraries -------------------------------------------------------------------
find_package(yaml-cpp REQUIRED)
find_package(HDF5 REQUIRED COMPONENTS C)
# zlib (zlib1g-dev; libhdf5-dev depends on it anyway): common/png inflates PNG image data.
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 CONFIG QUIET)
if(NOT CLI11_FOUND)
  find_path(T4G_CLI11_INCLUDE CLI/CLI.hpp REQUIRED)
endif()
find_package(Threads REQUIRED)

# SentencePiece (libsentencepiece-dev): the T5 tokenizer of models/t5_tokenizer. Required by
# t4g_models, but never linked into a program: libsentencepiece exports its private protobuf-lite
# copy, which clashes with the system libprotobuf that OpenCV loads (the program crashes before
# main). CMakeLists.txt builds the small shim library t4g_spm_shim against it instead, and
# models/sentencepiece_model loads that with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
find_path(T4G_SENTENCEPIECE_INCLUDE sentencepiece_processor.h)
find_library(T4G_SENTENCEPIECE_LIBRARY sentencepiece)
if(NOT T4G_SENTENCEPIECE_INCLUDE OR NOT T4G_SENTENCEPIECE_LIBRARY)
  message(FATAL_ERROR "t4g: SentencePiece not found (sentencepiece_processor.h: ${T4G_SENTENCEPIECE_INCLUDE}, "
                      "libsentencepiece: ${T4G_SENTENCEPIECE_LIBRARY}). Install libsentencepiece-dev "
                      "(scripts/bootstrap.sh does), or pass -DT4G_SENTENCEPIECE_INCLUDE=... -DT4G_SENTENCEPIECE_LIBRARY=...")
endif()
message(STATUS "t4g: SentencePiece from ${T4G_SENTENCEPIECE_LIBRARY}")

set(T4G_HAVE_OPENCV_INT 0)
if(NOT T4G_WITH_OPENCV STREQUAL "OFF")
  find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs videoio video optflow)
  if(OpenCV_FOUND)
    set(T4G_HAVE_OPENCV_INT 1)
    message(STATUS "t4g: OpenCV ${OpenCV_VERSION} found: video files and optical flow enabled")
  elseif(T4G_WITH_OPENCV STREQUAL "ON")
    message(FATAL_ERROR "t4g: T4G_WITH_OPENCV=ON but OpenCV (with contrib optflow) was not found")
  else()
    message(STATUS "t4g: OpenCV not found: video files and optical flow will say so at run time")
  endif()
endif()
set(T4G_HAVE_OPENCV ${T4G_HAVE_OPENCV_INT})

add_library(t4g_deps INTERFACE)
add_library(t4g::deps ALIAS t4g_deps)
target_link_libraries(t4g_deps INTERFACE ${TORCH_LIBRARIES} yaml-cpp ${HDF5_C_LIBRARIES} ZLIB::ZLIB
                      nlohmann_json::nlohmann_json Threads::Threads)
target_include_directories(t4g_deps INTERFACE ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/generated)
target_include_directories(t4g_deps SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS})
if(CLI11_FOUND)
  target_link_libraries(t4g_deps INTERFACE CLI11::CLI11)
else()
  target_include_directories(t4g_deps SYSTEM INTERFACE ${T4G_CLI11_INCLUDE})
endif()
if(T4G_HAVE_NCCL_INT)
  target_include_directories(t4g_deps SYSTEM INTERFACE ${_t4g_nccl_include})
  target_link_libraries(t4g_deps INTERFACE ${T4G_NCCL_LIBRARY})
endif()
# libtorch.so exports its own (older, statically linked) copies of std::filesystem functions
# (remove_all, rename, status, ...). Listed before libstdc++ in DT_NEEDED, they win symbol lookup,
# get mixed with libstdc++'s directory iterators, and fs::remove_all crashes on a null call. Make
# libstdc++ the first needed library so every program uses one implementation.
target_link_options(t4g_deps INTERFACE "SHELL:-Wl,--push-state,--no-as-needed -lstdc++ -Wl,--pop-state")
target_compile_options(t4g_deps INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
