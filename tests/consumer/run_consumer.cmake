# ctest driver: install the freshly built mtp into a scratch prefix, then configure,
# build and run tests/consumer against that prefix only.
#   cmake -DMTP_BUILD_DIR=... -DCONSUMER_CXX=... -DCONSUMER_SOURCE=... -DWORK_DIR=... \
#         -P run_consumer.cmake
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: '${ARGN}' failed (${rc})")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install ${MTP_BUILD_DIR} --prefix ${WORK_DIR}/prefix)
# The consumer uses mtp's compiler: a sanitized mtp::mtp passes on compiler-specific flags.
run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/build -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CXX_COMPILER=${CONSUMER_CXX})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/user_cell_consumer)
if(EXISTS ${WORK_DIR}/build/cuda_consumer)
  run(${WORK_DIR}/build/cuda_consumer)
endif()
