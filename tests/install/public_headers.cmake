# Prints the public headers of a ctorch source tree (src/ctorch.h and what it reaches, paths
# relative to src), one per line, as cmake/ctorchLayers.cmake defines them and the install uses:
#     cmake -DCTORCH_SOURCE_DIR=<checkout> -P tests/install/public_headers.cmake
if(NOT CTORCH_SOURCE_DIR)
  message(FATAL_ERROR "usage: cmake -DCTORCH_SOURCE_DIR=<checkout> -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
include(${CTORCH_SOURCE_DIR}/cmake/ctorchLayers.cmake)
ctorch_public_headers(${CTORCH_SOURCE_DIR}/src headers)
list(JOIN headers "\n" text)
execute_process(COMMAND ${CMAKE_COMMAND} -E echo "${text}")
