# Install: headers under include/mtp/<folder>/, the libraries, a CMake package and a
# pkg-config file.
#
#   find_package(mtp)                            mtp::mtp, and whatever else is usable
#   find_package(mtp COMPONENTS cuda experiments) fail unless those are there
#
# mtp::mtp needs only fmt, Eigen, OpenMP, oneDNN and nlohmann-json. The components are
# optional: mtp::cuda (packages built with MTP_CUDA) needs the CUDA toolkit on the
# consumer's machine, mtp::experiments (MTP_BUILD_EXPERIMENTS) needs Boost
# program_options, and with the CUDA backend also mtp::cuda. A component whose
# dependencies are missing is left out unless it was asked for.
include(CMakePackageConfigHelpers)

set(mtp_header_dirs core core/ops cells aggregators)
if(MTP_BUILD_EXPERIMENTS)
  list(APPEND mtp_header_dirs experiments)
endif()
foreach(dir ${mtp_header_dirs})
  file(GLOB headers ${PROJECT_SOURCE_DIR}/${dir}/*.hpp)
  install(FILES ${headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mtp/${dir})
endforeach()
install(FILES ${MTP_GENERATED_INCLUDE}/mtp/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mtp)

set(mtp_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/mtp)
install(TARGETS mtp EXPORT mtpTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT mtpTargets NAMESPACE mtp:: DESTINATION ${mtp_cmake_dir})
if(MTP_WITH_CUDA)
  install(TARGETS mtp_cuda EXPORT mtpCudaTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT mtpCudaTargets NAMESPACE mtp:: DESTINATION ${mtp_cmake_dir})
  file(GLOB mtp_cuda_headers ${PROJECT_SOURCE_DIR}/core/cuda/*.hpp)
  install(FILES ${mtp_cuda_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mtp/core/cuda)
endif()
set(MTP_WITH_EXPERIMENTS ${MTP_BUILD_EXPERIMENTS})
if(MTP_BUILD_EXPERIMENTS)
  install(TARGETS mtp_experiments EXPORT mtpExperimentsTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT mtpExperimentsTargets NAMESPACE mtp:: DESTINATION ${mtp_cmake_dir})
endif()

configure_package_config_file(cmake/mtpConfig.cmake.in ${PROJECT_BINARY_DIR}/mtpConfig.cmake
                              INSTALL_DESTINATION ${mtp_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mtpConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mtpConfig.cmake ${PROJECT_BINARY_DIR}/mtpConfigVersion.cmake
        DESTINATION ${mtp_cmake_dir})

# pkg-config, for builds without CMake: `c++ $(pkg-config --cflags --libs mtp)`. libmtp
# is static, so its own dependencies are in Libs. oneDNN has no .pc file on Debian.
set(mtp_pc_extra_cflags "")
set(mtp_pc_extra_libs "")
if(MTP_SANITIZE OR MTP_FUZZ)
  set(mtp_pc_extra_cflags " -fsanitize=address,undefined")
  set(mtp_pc_extra_libs " -fsanitize=address,undefined")
endif()
# Relocatable: the prefix is found from the .pc file's own folder, so that an install with
# `cmake --install --prefix` (or a copied tree) needs no edits.
file(RELATIVE_PATH mtp_pc_to_prefix /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/mtp.pc.in ${PROJECT_BINARY_DIR}/mtp.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mtp.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

if(MTP_NATIVE)
  # A package is copied to other machines; native code may not run there.
  install(CODE "message(WARNING \"mtp: installing a build made with MTP_NATIVE=ON: \"
                 \"libmtp.a may use instructions other CPUs lack (configure with \"
                 \"-DMTP_NATIVE=OFF for a package)\")")
endif()
