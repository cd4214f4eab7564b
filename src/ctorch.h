/* ctorch.h — the whole public API: include this one header.
 *
 * Layers, each including only the layers it is built on (checked by the build, see
 * cmake/ctorchLayers.cmake):
 *   tensor/    storage, shapes, creation, raw kernels, generator, status codes
 *   autograd/  the graph, backward, differentiable ops, gradcheck, DOT pictures (on tensor)
 *   nn/        modules (BatchNorm2d, ...), functional ops (nnf_*), state_dict (on autograd)
 *   io/        safetensors files, module save/load, atomic writes, JSON     (on nn)
 *   data/      IDX files, data sets, the mini-batch loader                  (on tensor, io)
 *   optim/     optimizers (SGD, Adam, AdamW), schedules, training checkpoints (on nn, io)
 */
#ifndef CTORCH_H
#define CTORCH_H

#include "tensor/status.h"
#include "tensor/generator.h"
#include "tensor/tensor.h"
#include "tensor/ops.h"
#include "tensor/parallel.h"
#include "autograd/autograd.h"
#include "autograd/ops.h"
#include "autograd/gradcheck.h"
#include "autograd/dot.h"
#include "nn/module.h"
#include "nn/batch_norm.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "nn/activation.h"
#include "nn/container.h"
#include "nn/loss.h"
#include "nn/init.h"
#include "nn/summary.h"
#include "nn/module_dot.h"
#include "nn/fuse.h"
#include "io/io.h"
#include "data/data.h"
#include "optim/optimizer.h"
#include "optim/sgd.h"
#include "optim/adam.h"
#include "optim/lr_scheduler.h"
#include "optim/checkpoint.h"
#include "optim/update_bn.h"

#endif /* CTORCH_H */
