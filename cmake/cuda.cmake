# The CUDA backend (docs/cuda.md): core/cuda/ as the library mtp_cuda (mtp::cuda).
# On by default wherever a CUDA compiler is found, so that every build on a machine with
# the toolkit compiles the kernels, GPU or not; the GPU tests skip without a device.
include(CheckLanguage)
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(mtp_nvcc nvcc)
  if(NOT mtp_nvcc AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
endif()
# nvcc compiles the host side of the .cu files with the project's C++ compiler.
if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER AND NOT DEFINED ENV{CUDAHOSTCXX})
  set(CMAKE_CUDA_HOST_COMPILER ${CMAKE_CXX_COMPILER})
endif()
check_language(CUDA)
# As a subproject, the parent asks for it: nvcc is slow, and a parent may not want it.
if(CMAKE_CUDA_COMPILER AND PROJECT_IS_TOP_LEVEL)
  set(mtp_cuda_default ON)
else()
  set(mtp_cuda_default OFF)
endif()
option(MTP_CUDA "Build the CUDA backend (mtp::cuda); default: on when nvcc is found (top level)"
       ${mtp_cuda_default})
if(NOT MTP_CUDA)
  return()
endif()
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "MTP_CUDA is on but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90)  # H100
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "mtp: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES})")

# The kernels are one .cu (nvcc is slow; everything else is host C++ that g++ compiles):
# the bodies in core/cuda/*_bodies.hpp are shared with the host-driven tests. The .cu
# includes nothing of mtp beyond those headers, and is C++17: CMake 3.25 derives a CUDA20
# dialect from CMAKE_CXX_STANDARD 20 and has no nvcc flag for it, so the CUDA standard
# is set explicitly.
add_library(mtp_cuda_kernels OBJECT core/cuda/kernels.cu)
target_include_directories(mtp_cuda_kernels PRIVATE ${MTP_INCLUDE_SHIM})
target_compile_options(mtp_cuda_kernels PRIVATE -Xcompiler=-Wall,-Wextra)
set_target_properties(mtp_cuda_kernels PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                                                  POSITION_INDEPENDENT_CODE ON)

add_library(mtp_cuda STATIC core/cuda/device.cpp $<TARGET_OBJECTS:mtp_cuda_kernels>)
add_library(mtp::cuda ALIAS mtp_cuda)
target_link_libraries(mtp_cuda PUBLIC mtp PRIVATE CUDA::cudart CUDA::cublas
                                                  $<BUILD_INTERFACE:mtp_warnings>)
target_compile_definitions(mtp_cuda PUBLIC MTP_WITH_CUDA=1)
# Installed (cmake/install.cmake) as mtp::cuda, the name the build tree's alias has.
set_target_properties(mtp_cuda PROPERTIES CUDA_STANDARD 17 EXPORT_NAME cuda
                                          POSITION_INDEPENDENT_CODE ON)
set(MTP_WITH_CUDA ON)
