# layer_rule.cmake — the include-rule check (cmake/ctorchLayers.cmake) passes the real tree and
# fails a copy of it with planted violations, naming each one.
#     cmake -DCTORCH_SOURCE_DIR=<checkout> -DWORK_DIR=<scratch dir> -P tests/layer_rule.cmake

set(check ${CTORCH_SOURCE_DIR}/cmake/ctorchLayers.cmake)

function(run_check src out_rc out_text)
  execute_process(COMMAND ${CMAKE_COMMAND} -DCTORCH_SRC=${src} -P ${check}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_rc} ${rc} PARENT_SCOPE)
  # CMake wraps long messages: compare with the line breaks taken out.
  string(REGEX REPLACE "[ \n]+" " " text "${out}${err}")
  set(${out_text} "${text}" PARENT_SCOPE)
endfunction()

run_check(${CTORCH_SOURCE_DIR}/src rc text)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the real tree breaks the include rule:\n${text}")
endif()

file(REMOVE_RECURSE ${WORK_DIR})
file(COPY ${CTORCH_SOURCE_DIR}/src DESTINATION ${WORK_DIR})
set(src ${WORK_DIR}/src)

# file to plant in | include | expected message
set(plants
    "tensor/tensor.c|../optim/sgd.h|src/tensor/tensor.c: includes optim/sgd.h, but layer tensor may include only tensor"
    "nn/linear.c|../autograd/functions.h|src/nn/linear.c: includes autograd/functions.h, which is private to autograd"
    "autograd/autograd.h|../nn/module.h|src/autograd/autograd.h: includes nn/module.h, but layer autograd may include only autograd, tensor"
    "data/idx.c|../optim/sgd.h|src/data/idx.c: includes optim/sgd.h, but layer data may include only data, tensor, io"
    "optim/sgd.c|../data/data.h|src/optim/sgd.c: includes data/data.h, but layer optim may include only optim, tensor, autograd, nn, io"
    "io/file.c|../ctorch.h|src/io/file.c: includes \"ctorch.h\", which is outside every layer")
foreach(plant IN LISTS plants)
  string(REPLACE "|" ";" fields "${plant}")
  list(GET fields 0 file)
  list(GET fields 1 inc)
  file(APPEND ${src}/${file} "#include \"${inc}\"\n")
endforeach()

run_check(${src} rc text)
if(rc EQUAL 0)
  message(FATAL_ERROR "the check passed a tree with planted violations")
endif()
set(missed "")
foreach(plant IN LISTS plants)
  string(REPLACE "|" ";" fields "${plant}")
  list(GET fields 2 expected)
  string(FIND "${text}" "${expected}" at)
  if(at EQUAL -1)
    list(APPEND missed "${expected}")
  endif()
endforeach()
if(missed)
  list(JOIN missed "\n  " missed)
  message(FATAL_ERROR "the check did not report:\n  ${missed}\nit said:\n${text}")
endif()
list(LENGTH plants n)
message(STATUS "layer_rule: the real tree passes; all ${n} planted violations are reported")
file(REMOVE_RECURSE ${WORK_DIR})
