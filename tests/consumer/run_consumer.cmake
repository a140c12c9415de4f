# ctest driver for tests/consumer, three ways:
#  1. install the freshly built mtp into a scratch prefix, then configure, build and run
#     the consumer against that prefix only (find_package);
#  2. the same consumer with mtp's source tree as a subproject (add_subdirectory), in a
#     build folder of its own and without a build type (mtp must not force one);
#  3. a program built by the compiler alone from the installed prefix's pkg-config file.
#   cmake -DMTP_BUILD_DIR=... -DMTP_SOURCE=... -DCONSUMER_CXX=... -DCONSUMER_SOURCE=... \
#         -DWORK_DIR=... [-DCONSUMER_MODES="package;subproject;pkgconfig"]
#         [-DCONSUMER_EXP=OFF] -P run_consumer.cmake
# CONSUMER_EXP=OFF leaves out the consumer's own command line (consumer-exp) in package
# mode: the sanitized build does, since compiling the experiments' templates under ASan
# costs minutes and the release build's run already proves that path.
cmake_policy(VERSION 3.25)
file(REMOVE_RECURSE ${WORK_DIR})
if(NOT CONSUMER_MODES)
  set(CONSUMER_MODES package subproject pkgconfig)
endif()
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: '${ARGN}' failed (${rc})")
  endif()
endfunction()
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${MTP_BUILD_DIR} --prefix ${prefix})

if(package IN_LIST CONSUMER_MODES)
  # The consumer uses mtp's compiler: a sanitized mtp::mtp passes on compiler-specific flags.
  if(NOT DEFINED CONSUMER_EXP)
    set(CONSUMER_EXP ON)
  endif()
  # -O1: this mode proves that the installed package builds and runs a consumer's cell and
  # command line (small runs), not how fast: it compiles in half the time of -O3.
  run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/package -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CONSUMER_CXX}
      -DCONSUMER_EXP=${CONSUMER_EXP})
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/package -j 2)
  run(${WORK_DIR}/package/user_cell_consumer)
  run(${WORK_DIR}/package/streaming_example)
  # Its own command line on its own cell and aggregator: train, eval, a two-run sweep and
  # its report.
  if(CONSUMER_EXP)
    set(exe ${WORK_DIR}/package/consumer-exp)
    set(own --cell minimal-gated --aggregator softmax-mix --perspectives 2 --threads 1)
    run(${exe} check --cell minimal-gated)  # the generated checks, by registration alone
    run(${exe} check --aggregator softmax-mix)
    run(${exe} ${own} --steps 50 --out ${WORK_DIR}/run)
    # A selector flag its aggregator's options have no member for is refused (exit 2).
    execute_process(COMMAND ${exe} ${own} --noise 0.1 --steps 1 --out ${WORK_DIR}/refused
                    RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 2 OR NOT err MATCHES "--noise has no effect with --aggregator softmax-mix")
      message(FATAL_ERROR "consumer test: --noise with softmax-mix gave ${rc}: ${err}")
    endif()
    run(${exe} eval --checkpoint ${WORK_DIR}/run/model.safetensors)
    run(${exe} --task first-token ${own} --out ${WORK_DIR}/own-task)  # its own task too
    # and its own flag, in a grid
    run(${exe} sweep --grid recall-position=0,2 --task first-token ${own} --steps 20
        --out ${WORK_DIR}/own-flag-sweep --jobs 2)
    run(${exe} report ${WORK_DIR}/own-flag-sweep --no-plots)
    run(${exe} sweep --grid seed=0,1 ${own} --steps 20 --out ${WORK_DIR}/sweep --jobs 2)
    run(${exe} report ${WORK_DIR}/sweep --no-plots)
    foreach(file results.csv summary.csv REPORT.md)
      if(NOT EXISTS ${WORK_DIR}/sweep/${file})
        message(FATAL_ERROR "consumer test: the sweep's report has no ${file}")
      endif()
    endforeach()
  endif()
  if(EXISTS ${WORK_DIR}/package/cuda_consumer)
    run(${WORK_DIR}/package/cuda_consumer)
  endif()
endif()

if(subproject IN_LIST CONSUMER_MODES)
  run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/subproject -DMTP_SOURCE=${MTP_SOURCE}
      -DCMAKE_CXX_FLAGS=-O0 -DCMAKE_CXX_COMPILER=${CONSUMER_CXX} -DMTP_UNITY_BUILD=ON)
  # -O0 and a unity build: this mode proves that mtp embeds, not how fast it runs;
  # compiling mtp and its experiments a second time this way takes a fifth of -O2's time.
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/subproject -j 2 --target user_cell_consumer consumer-exp)
  # In the parent's own output folder: mtp did not redirect the parent's executables.
  run(${WORK_DIR}/subproject/user_cell_consumer)
  run(${WORK_DIR}/subproject/consumer-exp --cell minimal-gated --perspectives 2 --steps 10
      --threads 1 --out ${WORK_DIR}/subproject-run)
endif()

if(pkgconfig IN_LIST CONSUMER_MODES)
  file(GLOB_RECURSE pc_file ${prefix}/mtp.pc)
  get_filename_component(pc_dir "${pc_file}" DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} ${pc_dir})
  foreach(what cflags libs)
    execute_process(COMMAND pkg-config --${what} mtp OUTPUT_VARIABLE flags_${what}
                    OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "consumer test: pkg-config --${what} mtp failed (${rc})")
    endif()
    separate_arguments(flags_${what} UNIX_COMMAND "${flags_${what}}")
  endforeach()
  run(${CONSUMER_CXX} -O1 ${flags_cflags} ${CONSUMER_SOURCE}/pkgconfig_main.cpp -o
      ${WORK_DIR}/pkgconfig_consumer ${flags_libs})
  run(${WORK_DIR}/pkgconfig_consumer)
endif()
