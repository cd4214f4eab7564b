# The include rule of src/: each layer includes only itself and the layers it is built on, and a
# private header (one that src/ctorch.h does not reach) only from its own layer, unless it is
# listed in CTORCH_INTERNAL_HEADERS.
#
#   tensor <- autograd <- nn <- io <- optim
#                                 ^-- data (on tensor and io)
#   distributed (on all of them, and MPI): built only where MPI is found, included by no layer
#
# Included from CMakeLists.txt, this file defines ctorch_public_headers() (what is installed) and
# ctorch_check_layers(). Run as a script it checks a tree:
#     cmake -DCTORCH_SRC=path/to/src -P cmake/ctorchLayers.cmake
# and fails, naming each offending line, when a file breaks the rule. The build runs it before
# compiling the library (a violation fails the build); the test layer_rule plants violations to
# show that it does.

cmake_policy(PUSH)
cmake_policy(VERSION 3.25) # IN_LIST, also when run as a script

set(CTORCH_LAYERS tensor autograd nn io data optim distributed)
set(CTORCH_LAYER_DEPS_tensor "")
set(CTORCH_LAYER_DEPS_autograd tensor)
set(CTORCH_LAYER_DEPS_nn tensor autograd)
set(CTORCH_LAYER_DEPS_io tensor autograd nn)
set(CTORCH_LAYER_DEPS_data tensor io)
set(CTORCH_LAYER_DEPS_optim tensor autograd nn io)
set(CTORCH_LAYER_DEPS_distributed tensor autograd nn io data optim)
# Private headers (not installed) that the layers above theirs may include too: the library's
# internals, not its API.
set(CTORCH_INTERNAL_HEADERS tensor/simd.h tensor/text.h)

# The quoted includes of file, resolved to paths relative to src (as written when they leave it).
function(_ctorch_includes src file out)
  file(STRINGS ${file} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  get_filename_component(dir ${file} DIRECTORY)
  set(result "")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]+)\".*" "\\1" inc "${line}")
    if(EXISTS ${dir}/${inc})
      get_filename_component(path ${dir}/${inc} ABSOLUTE)
    else()
      get_filename_component(path ${src}/${inc} ABSOLUTE)
    endif()
    file(RELATIVE_PATH rel ${src} ${path})
    list(APPEND result "${rel}")
  endforeach()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()

# The headers src/ctorch.h reaches, relative to src: the public API, installed.
function(ctorch_public_headers src out)
  set(todo ctorch.h)
  set(seen "")
  while(todo)
    list(POP_FRONT todo header)
    if(header IN_LIST seen OR NOT EXISTS ${src}/${header})
      continue()
    endif()
    list(APPEND seen ${header})
    _ctorch_includes(${src} ${src}/${header} incs)
    list(APPEND todo ${incs})
  endwhile()
  set(${out} "${seen}" PARENT_SCOPE)
endfunction()

function(ctorch_check_layers src)
  ctorch_public_headers(${src} public)
  file(GLOB_RECURSE files RELATIVE ${src} ${src}/*.c ${src}/*.h)
  list(SORT files)
  set(problems "")
  foreach(file IN LISTS files)
    if(file STREQUAL "ctorch.h")
      continue()
    endif()
    string(REGEX MATCH "^[^/]+" layer "${file}")
    if(NOT layer IN_LIST CTORCH_LAYERS)
      list(APPEND problems "src/${file}: is in '${layer}', which is not a layer (${CTORCH_LAYERS}); "
                           "add it to cmake/ctorchLayers.cmake with the layers it is built on")
      continue()
    endif()
    set(allowed ${layer} ${CTORCH_LAYER_DEPS_${layer}})
    list(JOIN allowed ", " allowed_text)
    _ctorch_includes(${src} ${src}/${file} incs)
    foreach(inc IN LISTS incs)
      string(REGEX MATCH "^[^/]+" target "${inc}")
      if(inc STREQUAL "ctorch.h" OR inc MATCHES "^\\.\\./")
        list(APPEND problems "src/${file}: includes \"${inc}\", which is outside every layer")
      elseif(NOT target IN_LIST allowed)
        list(APPEND problems "src/${file}: includes ${inc}, but layer ${layer} may include only "
                             "${allowed_text}")
      elseif(NOT target STREQUAL layer AND NOT inc IN_LIST public AND NOT inc IN_LIST CTORCH_INTERNAL_HEADERS)
        list(APPEND problems "src/${file}: includes ${inc}, which is private to ${target} (src/ctorch.h does not "
                             "reach it)")
      endif()
    endforeach()
  endforeach()
  if(problems)
    list(JOIN problems "\n  " text)
    message(FATAL_ERROR "ctorch include rule broken (see cmake/ctorchLayers.cmake):\n  ${text}")
  endif()
endfunction()

if(CMAKE_SCRIPT_MODE_FILE AND CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  if(NOT CTORCH_SRC)
    message(FATAL_ERROR "usage: cmake -DCTORCH_SRC=path/to/src -P cmake/ctorchLayers.cmake")
  endif()
  ctorch_check_layers(${CTORCH_SRC})
endif()

cmake_policy(POP)
