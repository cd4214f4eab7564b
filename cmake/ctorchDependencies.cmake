# Finds ctorch's dependencies as imported targets. Shared by the build (CMakeLists.txt) and by
# the installed package config, because the exported static library links these same targets.
# Sets CTORCH_MISSING_DEPENDENCIES to one "X not found: apt-get install Y" line per missing one;
# the caller decides whether that is fatal.

set(CTORCH_MISSING_DEPENDENCIES "")

find_package(PkgConfig QUIET)
if(NOT PKG_CONFIG_FOUND)
  list(APPEND CTORCH_MISSING_DEPENDENCIES "pkg-config not found: apt-get install pkg-config")
else()
  # The target names (PkgConfig::ctorch_<module>) are part of the exported link interface.
  foreach(_ctorch_dep IN ITEMS "openblas|OpenBLAS|libopenblas-dev"
                               "stb|stb (stb_ds)|libstb-dev"
                               "libcjson|cJSON|libcjson-dev")
    string(REPLACE "|" ";" _ctorch_dep "${_ctorch_dep}")
    list(GET _ctorch_dep 0 _ctorch_module)
    list(GET _ctorch_dep 1 _ctorch_name)
    list(GET _ctorch_dep 2 _ctorch_package)
    if(NOT TARGET PkgConfig::ctorch_${_ctorch_module})
      pkg_check_modules(ctorch_${_ctorch_module} QUIET IMPORTED_TARGET ${_ctorch_module})
    endif()
    if(NOT TARGET PkgConfig::ctorch_${_ctorch_module})
      list(APPEND CTORCH_MISSING_DEPENDENCIES
           "${_ctorch_name} not found: apt-get install ${_ctorch_package}")
    endif()
  endforeach()
  unset(_ctorch_dep)
  unset(_ctorch_module)
  unset(_ctorch_name)
  unset(_ctorch_package)
endif()

find_package(ZLIB QUIET)
if(NOT TARGET ZLIB::ZLIB)
  list(APPEND CTORCH_MISSING_DEPENDENCIES "zlib not found: apt-get install zlib1g-dev")
endif()

find_package(OpenMP QUIET COMPONENTS C)
if(NOT TARGET OpenMP::OpenMP_C)
  if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
    list(APPEND CTORCH_MISSING_DEPENDENCIES "OpenMP not found for clang: apt-get install libomp-dev")
  else()
    list(APPEND CTORCH_MISSING_DEPENDENCIES
         "OpenMP not found for ${CMAKE_C_COMPILER_ID}: apt-get install build-essential (gcc's libgomp)")
  endif()
endif()
