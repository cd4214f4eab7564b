/* batch_norm_explained.c — BatchNorm2d on a 2x2x2x2 input, every number printed, every gradient
 * computed three ways. A companion to docs/batch_norm.md: run it and check each line by hand.
 *
 *   1. the input, in full;
 *   2. the training-mode forward, channel by channel: mean, biased and unbiased variance, invstd,
 *      xhat, y, and the running-statistics update;
 *   3. the backward: dx, dgamma and dbeta (a) from the fused analytic backward, (b) from the layer
 *      composed of primitive ops with autograd deriving it, (c) from central finite differences in
 *      double, side by side, with their largest differences;
 *   4. the same in eval mode;
 *   5. why a uniform upstream gradient makes dx vanish;
 *   6. checking a layer of your own with torch_gradcheck, and what it says when the backward is wrong;
 *   7. pictures of the autograd graphs (Graphviz DOT, and PNG when Graphviz is installed).
 *
 * Usage: batch_norm_explained [--out DIR]     (DIR, made if missing, default ".", receives the pictures)
 * Exit status 0 when the three gradients agree and gradcheck catches the broken backward, 1 when
 * they do not, 2 for a bad command line. tests/examples/batch_norm_explained.sh runs it for CTest.
 */
#define _POSIX_C_SOURCE 200809L /* posix_spawnp, waitpid, mkdir */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "ctorch.h"
#include "models.h"

/* ---- the example's numbers -------------------------------------------------------------------- */

enum { N = 2, C = 2, H = 2, W = 2, S = H * W, M = N * S, NUMEL = N * C * S };
#define EPS      1e-5 /* PyTorch's and R torch's defaults */
#define MOMENTUM 0.1
/* Largest difference allowed between the three ways of computing a gradient: float32 arithmetic
 * on values of order 1 rounds at ~1e-7, so 1e-5 leaves room and still catches any wrong term. */
#define AGREE    1e-5

/* x is (N, C, H, W), element (n, c, h, w) at ((n * C + c) * H + h) * W + w. Channel 0 holds
 * 1 2 4 5 3 0 6 3 (mean 3), channel 1 holds -1 1 0 2 -2 0 1 -1 (mean 0). */
static const float X[NUMEL] = {1, 2, 4, 5, -1, 1, 0, 2, 3, 0, 6, 3, -2, 0, 1, -1};
/* The upstream gradient dL/dy: non-uniform, or dx would vanish (section 5). */
static const float DY[NUMEL] = {1, 0, -1, 2, 2, -1, 0, 1, 0.5f, -2, 1, 0, -1, 0.5f, 0, -0.5f};
static const float GAMMA[C] = {2, 0.5f}, BETA[C] = {1, -1};

static int at(int n, int c, int s) { return (n * C + c) * S + s; }

/* Examples stop at the first error; a library never would (see status.h). */
static void *check(void *p) {
    if (!p) {
        fprintf(stderr, "error: %s\n", torch_last_error());
        exit(1);
    }
    return p;
}

static void check_ok(torch_status st) {
    if (st != TORCH_OK) check(NULL);
}

/* A leaf tensor with a copy of v. */
static tensor *leaf(const float *v, int ndim, const int64_t *shape, bool requires_grad) {
    tensor *t = check(torch_tensor(v, ndim, shape));
    check_ok(tensor_set_requires_grad(t, requires_grad));
    return t;
}

static tensor *input_leaf(void) { return leaf(X, TORCH_SHAPE(N, C, H, W), true); }

/* ---- the reference: BatchNorm2d in double, straight from the formulas -------------------------- */

typedef struct stats {
    double mean[C], var[C], var_unbiased[C], invstd[C]; /* what normalised the batch */
    double xhat[NUMEL], y[NUMEL];
} stats;

/* Per channel c, over its M values x_i:
 *   mean = (1/M) sum_i x_i,  var = (1/M) sum_i (x_i - mean)^2   (training; else the running ones)
 *   invstd = 1 / sqrt(var + eps),  xhat_i = (x_i - mean) * invstd,  y_i = gamma * xhat_i + beta */
static void bn_double(const double *x, const double *gamma, const double *beta, bool training,
                      const double *running_mean, const double *running_var, stats *st) {
    for (int c = 0; c < C; c++) {
        double sum = 0, sq = 0;
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) sum += x[at(n, c, s)];
        const double mean = training ? sum / M : running_mean[c];
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) sq += (x[at(n, c, s)] - sum / M) * (x[at(n, c, s)] - sum / M);
        const double var = training ? sq / M : running_var[c];
        st->mean[c] = mean;
        st->var[c] = var;
        st->var_unbiased[c] = sq / (M - 1);
        st->invstd[c] = 1 / sqrt(var + EPS);
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) {
                const int i = at(n, c, s);
                st->xhat[i] = (x[i] - mean) * st->invstd[c];
                st->y[i] = gamma[c] * st->xhat[i] + beta[c];
            }
    }
}

/* The three gradients, in double, however they were obtained. */
typedef struct grads {
    double dx[NUMEL], dgamma[C], dbeta[C];
} grads;

/* (c) Central finite differences of L = sum_i y_i * dy_i, one value at a time:
 *   dL/dv ~ (L(v + h) - L(v - h)) / 2h, error O(h^2) (~1e-12) plus double rounding of L over 2h
 *   (~|L| 1e-16 / 1e-6, ~1e-9): far below the 1e-5 the three ways must agree to. */
static void finite_differences(bool training, const double *running_mean, const double *running_var, grads *g) {
    const double h = 1e-6;
    double x[NUMEL], gamma[C], beta[C];
    for (int i = 0; i < NUMEL; i++) x[i] = X[i];
    for (int c = 0; c < C; c++) gamma[c] = GAMMA[c], beta[c] = BETA[c];
    double *values[] = {x, gamma, beta}, *out[] = {g->dx, g->dgamma, g->dbeta};
    const int count[] = {NUMEL, C, C};
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < count[v]; i++) {
            const double keep = values[v][i];
            double loss[2];
            for (int side = 0; side < 2; side++) {
                stats st;
                values[v][i] = keep + (side ? -h : h);
                bn_double(x, gamma, beta, training, running_mean, running_var, &st);
                loss[side] = 0;
                for (int k = 0; k < NUMEL; k++) loss[side] += st.y[k] * DY[k];
            }
            values[v][i] = keep;
            out[v][i] = (loss[0] - loss[1]) / (2 * h);
        }
}

/* The gradients autograd accumulated into x, gamma and beta. */
static void grads_of(const tensor *x, const tensor *gamma, const tensor *beta, grads *g) {
    const float *dx = tensor_data_f32(check(tensor_grad(x)));
    const float *dg = tensor_data_f32(check(tensor_grad(gamma))), *db = tensor_data_f32(check(tensor_grad(beta)));
    for (int i = 0; i < NUMEL; i++) g->dx[i] = dx[i];
    for (int c = 0; c < C; c++) g->dgamma[c] = dg[c], g->dbeta[c] = db[c];
}

static double max_diff(const grads *a, const grads *b) {
    double d = 0;
    for (int i = 0; i < NUMEL; i++) d = fmax(d, fabs(a->dx[i] - b->dx[i]));
    for (int c = 0; c < C; c++) d = fmax(d, fmax(fabs(a->dgamma[c] - b->dgamma[c]), fabs(a->dbeta[c] - b->dbeta[c])));
    return d;
}

/* ---- printing ------------------------------------------------------------------------------------ */

static void print_channel(const char *name, const double *v, int c) {
    printf("    %-7s =", name);
    for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) printf(" %9.6f", v[at(n, c, s)]);
    printf("\n");
}

/* The three gradients side by side, then their largest differences; true when they agree. */
static bool print_three_ways(const grads *fused, const grads *composite, const grads *numeric) {
    printf("  %-16s %12s %12s %12s\n", "", "(a) fused", "(b) composed", "(c) numeric");
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int s = 0; s < S; s++) {
                char name[32];
                const int i = at(n, c, s);
                snprintf(name, sizeof name, "dx[%d,%d,%d,%d]", n, c, s / W, s % W);
                printf("  %-16s %12.6f %12.6f %12.6f\n", name, fused->dx[i], composite->dx[i], numeric->dx[i]);
            }
    for (int c = 0; c < C; c++)
        printf("  dgamma[%d]        %12.6f %12.6f %12.6f\n", c, fused->dgamma[c], composite->dgamma[c],
               numeric->dgamma[c]);
    for (int c = 0; c < C; c++)
        printf("  dbeta[%d]         %12.6f %12.6f %12.6f\n", c, fused->dbeta[c], composite->dbeta[c], numeric->dbeta[c]);
    const double ab = max_diff(fused, composite), ac = max_diff(fused, numeric), bc = max_diff(composite, numeric);
    const bool agree = ab <= AGREE && ac <= AGREE && bc <= AGREE;
    printf("  largest differences: |a - b| = %.1e, |a - c| = %.1e, |b - c| = %.1e\n", ab, ac, bc);
    printf("  the three agree to %.0e: %s\n", AGREE, agree ? "yes" : "NO");
    return agree;
}

/* ---- (a) and (b): one forward and backward through ctorch -------------------------------------- */

/* (a) The module users call: its forward records one NativeBatchNormBackward0 node, whose backward
 * is the analytic formula (src/nn/functional_batch_norm.c). Returns y (owned) and the gradients. */
static tensor *fused_pass(nn_module *bn, grads *g) {
    tensor *x = input_leaf(), *dy = leaf(DY, TORCH_SHAPE(N, C, H, W), false);
    tensor *y = check(nn_module_forward(bn, x));
    check_ok(tensor_backward(y, dy, true));
    grads_of(x, nn_module_get_parameter(bn, "weight"), nn_module_get_parameter(bn, "bias"), g);
    nn_module_zero_grad(bn);
    tensor_free(dy);
    tensor_free(x);
    return y;
}

/* (b) The same layer composed of primitive differentiable ops (mean, var, sub, rsqrt, mul, add;
 * src/nn/functional_batch_norm_composite.c): autograd derives the backward from theirs. */
static void composite_pass(bool training, tensor *running_mean, tensor *running_var, grads *g) {
    tensor *x = input_leaf(), *dy = leaf(DY, TORCH_SHAPE(N, C, H, W), false);
    tensor *gamma = leaf(GAMMA, TORCH_SHAPE(C), true), *beta = leaf(BETA, TORCH_SHAPE(C), true);
    tensor *y = check(nnf_batch_norm_composite(x, running_mean, running_var, gamma, beta, training, MOMENTUM, EPS));
    check_ok(tensor_backward(y, dy, false));
    grads_of(x, gamma, beta, g);
    tensor_free(y);
    tensor_free(dy);
    tensor_free(gamma);
    tensor_free(beta);
    tensor_free(x);
}

/* ---- 6. a layer of your own, checked with torch_gradcheck ---------------------------------------- */

/* "center": y = x - mean_c(x), the first step of BatchNorm, per channel over (N, H, W). Every y_i
 * depends on every x_j of its channel through the mean: dy_i/dx_j = delta_ij - 1/M, so
 *     dx_j = sum_i dy_i (delta_ij - 1/M) = dy_j - mean_c(dy).
 * The broken version forgets the mean's share and returns dx = dy: the classic mistake. */
static const int CHANNEL_DIMS[] = {0, 2, 3};

static torch_status center_backward(ag_node *node, const tensor *dy, tensor **dx) {
    (void)node;
    tensor *mean_dy = tensor_mean(dy, 3, CHANNEL_DIMS, true);
    *dx = mean_dy ? tensor_binary(TORCH_BINARY_SUB, dy, mean_dy) : NULL;
    tensor_free(mean_dy);
    return *dx ? TORCH_OK : torch_last_status();
}

static torch_status broken_center_backward(ag_node *node, const tensor *dy, tensor **dx) {
    (void)node;
    *dx = tensor_clone(dy); /* wrong: forgets that the mean depends on every x */
    return *dx ? TORCH_OK : torch_last_status();
}

static const ag_function center_fn = {.name = "CenterBackward0", .backward = center_backward};
static const ag_function broken_center_fn = {.name = "BrokenCenterBackward0", .backward = broken_center_backward};

/* The op torch_gradcheck calls: forward with raw kernels, then one graph node with the chosen backward. */
static tensor *center(tensor *const *inputs, void *fn) {
    tensor *mean = tensor_mean(inputs[0], 3, CHANNEL_DIMS, true);
    tensor *y = mean ? tensor_binary(TORCH_BINARY_SUB, inputs[0], mean) : NULL;
    tensor_free(mean);
    if (y && ag_should_record(1, inputs) && !ag_record(fn, y, 1, inputs)) {
        tensor_free(y);
        return NULL;
    }
    return y;
}

/* ---- 7. pictures ---------------------------------------------------------------------------------- */

extern char **environ;

/* Runs `dot -Tpng path.dot -o path.png`; false with *missing set when Graphviz is not installed. */
static bool render(const char *dot_path, const char *png_path, bool *missing) {
    char *argv[] = {"dot", "-Tpng", (char *)dot_path, "-o", (char *)png_path, NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "dot", NULL, NULL, argv, environ), status = 0;
    *missing = err == ENOENT;
    if (err != 0) return false;
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Writes dot (consumed) to DIR/name.dot, renders it when it can, and says what it did. */
static bool write_picture(const char *dir, const char *name, char *dot, const char *what) {
    char dot_path[1024], png_path[1024];
    snprintf(dot_path, sizeof dot_path, "%s/%s.dot", dir, name);
    snprintf(png_path, sizeof png_path, "%s/%s.png", dir, name);
    check(dot);
    const char *title = strstr(dot, "\n  label=\"");
    const int title_len = title ? (int)strcspn(title + 10, "\"") : 0;
    bool ok = io_write_file_atomic(dot_path, dot, strlen(dot)) == TORCH_OK;
    printf("  %s: %s.dot\n    %.*s\n", what, name, title_len, title ? title + 10 : "");
    if (!ok) {
        fprintf(stderr, "error: %s\n", torch_last_error());
    } else {
        bool missing = false;
        if (render(dot_path, png_path, &missing)) printf("    picture: rendered %s\n", png_path);
        else if (missing) printf("    picture: Graphviz is not installed: apt-get install graphviz, then dot -Tpng %s -o %s\n", dot_path, png_path);
        else printf("    picture: dot failed on %s\n", dot_path), ok = false;
    }
    free(dot);
    return ok;
}

static bool pictures(const char *dir) {
    bool ok = true;
    torch_generator gen = torch_generator_new(0);

    /* The fused layer: one node holding the input, gamma, and per-channel mean and invstd. */
    nn_module *bn = check(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = C)));
    tensor *x = input_leaf();
    tensor *y = check(nn_module_forward(bn, x));
    ok &= write_picture(dir, "bn_fused", nn_module_make_dot(bn, y, x, true), "fused BatchNorm2d, training");
    tensor_free(y);

    /* The composed layer, training and eval: a node per primitive op. The labels name the
     * module's tensors, which the composed function is given. */
    const char *keys[] = {"weight", "bias", "running_mean", "running_var"};
    torch_dot_label labels[5] = {{x, "input", TORCH_DOT_INPUT}};
    for (int i = 0; i < 4; i++) {
        tensor *t = i < 2 ? nn_module_get_parameter(bn, keys[i]) : nn_module_get_buffer(bn, keys[i]);
        labels[i + 1] = (torch_dot_label){t, keys[i], i < 2 ? TORCH_DOT_PARAMETER : TORCH_DOT_BUFFER};
    }
    for (int training = 1; training >= 0; training--) {
        y = check(nnf_batch_norm_composite(x, (tensor *)labels[3].tensor, (tensor *)labels[4].tensor,
                                           (tensor *)labels[1].tensor, (tensor *)labels[2].tensor, training, MOMENTUM,
                                           EPS));
        char *dot = torch_make_dot(y, (torch_make_dot_options){.labels = labels, .n_labels = 5, .show_saved = true});
        ok &= write_picture(dir, training ? "bn_composite" : "bn_composite_eval", dot,
                            training ? "composed BatchNorm2d, training" : "composed BatchNorm2d, eval");
        tensor_free(y);
    }
    tensor_free(x);
    nn_module_free(bn);

    /* One training step of the reference CNN on a batch of 4 images: the loss's graph, then the
     * backward and the SGD step it is for. */
    nn_module *cnn = check(reference_cnn(&gen));
    tensor *images = check(torch_randn(&gen, TORCH_SHAPE(4, 1, 28, 28)));
    tensor *labels_t = check(torch_tensor_int64((const int64_t[]){0, 1, 2, 3}, TORCH_SHAPE(4)));
    nn_tensor_dict *params = check(nn_module_named_parameters(cnn));
    optim_optimizer *sgd = check(optim_sgd(params, OPTIM_SGD_OPTIONS(.lr = 0.1)));
    tensor *logits = check(nn_module_forward(cnn, images));
    tensor *loss = check(nnf_cross_entropy(logits, labels_t));
    ok &= write_picture(dir, "cnn_train_step", nn_module_make_dot(cnn, loss, images, true),
                        "reference CNN, one training step (batch of 4)");
    check_ok(tensor_backward(loss, NULL, false));
    check_ok(optim_step(sgd));
    optim_free(sgd);
    nn_tensor_dict_free(params);
    tensor_free(loss);
    tensor_free(logits);
    tensor_free(labels_t);
    tensor_free(images);
    nn_module_free(cnn);
    return ok;
}

/* Sets gamma and beta to the example's values. Parameters are written under no-grad, as
 * optimizers and initialisers write them. */
static void set_affine(nn_module *bn) {
    TORCH_NO_GRAD_GUARD;
    tensor *gamma = check(torch_tensor(GAMMA, TORCH_SHAPE(C))), *beta = check(torch_tensor(BETA, TORCH_SHAPE(C)));
    check_ok(tensor_copy_(nn_module_get_parameter(bn, "weight"), gamma));
    check_ok(tensor_copy_(nn_module_get_parameter(bn, "bias"), beta));
    tensor_free(gamma);
    tensor_free(beta);
}

static void print_upstream(void) {
    double dy[NUMEL];
    for (int i = 0; i < NUMEL; i++) dy[i] = DY[i];
    printf("  upstream gradient dy = dL/dy:\n");
    for (int c = 0; c < C; c++) {
        char name[16];
        snprintf(name, sizeof name, "dy (c%d)", c);
        print_channel(name, dy, c);
    }
}

/* Section 3's formulas for one element, dx[0,0,0,0], with every intermediate printed. */
static void by_hand(const stats *st, const double *gamma) {
    double dbeta = 0, dgamma = 0;
    for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) {
            dbeta += DY[at(n, 0, s)];
            dgamma += DY[at(n, 0, s)] * st->xhat[at(n, 0, s)];
        }
    const double scale = gamma[0] * st->invstd[0] / M, xhat = st->xhat[0], inner = M * DY[0] - dbeta - xhat * dgamma;
    printf("  by hand, channel 0: dbeta = %.6f, dgamma = %.6f; for dx[0,0,0,0] (dy = %g, xhat = %.6f):\n"
           "    gamma * invstd / M             = %g * %.6f / %d = %.6f\n"
           "    M * dy - dbeta - xhat * dgamma = %d * %g - %.6f - (%.6f) * %.6f = %.6f\n"
           "    dx[0,0,0,0]                    = %.6f * %.6f = %.6f\n",
           dbeta, dgamma, DY[0], xhat, gamma[0], st->invstd[0], M, scale, M, DY[0], dbeta, xhat, dgamma, inner, scale,
           inner, scale * inner);
}

/* Section 5. With dy = 1 everywhere, dbeta = M and dgamma = sum(xhat) = 0, so
 *     dx = gamma * invstd / M * (M * 1 - M - xhat * 0) = 0.
 * The reason: xhat sums to 0 over a channel whatever x is, so L = sum(y) = sum(gamma xhat + beta)
 * = M beta per channel, which no x can change. A gradient check with dy = 1 would pass a backward
 * that returns zeros; that is why torch_gradcheck uses a random upstream gradient. */
static bool uniform_upstream(void) {
    tensor *x = input_leaf(), *gamma = leaf(GAMMA, TORCH_SHAPE(C), true), *beta = leaf(BETA, TORCH_SHAPE(C), true);
    tensor *y = check(nnf_batch_norm(x, NULL, NULL, gamma, beta, true, MOMENTUM, EPS));
    tensor *ones = check(torch_ones(TORCH_SHAPE(N, C, H, W)));
    check_ok(tensor_backward(y, ones, false));
    const float *dx = tensor_data_f32(tensor_grad(x)), *dg = tensor_data_f32(tensor_grad(gamma));
    const float *db = tensor_data_f32(tensor_grad(beta));
    double largest = 0;
    for (int i = 0; i < NUMEL; i++) largest = fmax(largest, fabs(dx[i]));
    printf("  dy = 1 everywhere: dbeta = [%g, %g] = M, dgamma = [%.1e, %.1e] = sum(xhat) = 0, so\n"
           "  dx = gamma * invstd / M * (M - M - xhat * 0) = 0; ctorch's dx: largest |dx| = %.1e\n",
           db[0], db[1], dg[0], dg[1], largest);
    printf("  (xhat sums to 0 over a channel whatever x is, so with dy = 1 the loss sum(y) = M * beta per\n"
           "  channel does not depend on x at all; a gradient check with dy = 1 proves nothing for BatchNorm.)\n");
    tensor_free(ones);
    tensor_free(y);
    tensor_free(x);
    tensor_free(gamma);
    tensor_free(beta);
    return largest < 1e-6;
}

/* Section 6: the learner's "center" layer with its right and its broken backward. */
static bool gradcheck_demo(void) {
    tensor *x = input_leaf();
    const char *names[] = {"x"};
    torch_gradcheck_result r;
    printf("  center: y = x - mean_c(x), backward dx = dy - mean_c(dy)\n");
    torch_status right = torch_gradcheck(center, (void *)&center_fn, 1, &x, names, torch_gradcheck_options_default(), &r);
    printf("    %s\n", r.message);
    printf("  broken center: backward dx = dy (forgets that the mean depends on every x)\n");
    torch_status broken =
        torch_gradcheck(center, (void *)&broken_center_fn, 1, &x, names, torch_gradcheck_options_default(), &r);
    printf("    %s\n", r.message);
    printf("    status %s: %s\n", torch_status_string(broken), broken == TORCH_ERR_INVALID_STATE ? "the broken backward is reported" : "NOT reported");
    tensor_free(x);
    return right == TORCH_OK && broken == TORCH_ERR_INVALID_STATE;
}

/* ---- the walk-through ------------------------------------------------------------------------------ */

static void usage(FILE *to) {
    fprintf(to, "usage: batch_norm_explained [--out DIR]\n"
                "  BatchNorm2d on a 2x2x2x2 input, step by step (see docs/batch_norm.md).\n"
                "  --out DIR   where the graph pictures go, made if missing (default: the current folder)\n"
                "  --help      this text\n");
}

int main(int argc, char **argv) {
    const char *out_dir = ".";
    static const struct option long_options[] = {{"out", required_argument, NULL, 'o'},
                                                 {"help", no_argument, NULL, 'h'},
                                                 {NULL, 0, NULL, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "", long_options, NULL)) != -1;) {
        if (opt == 'o') out_dir = optarg;
        else if (opt == 'h') return usage(stdout), 0;
        else return usage(stderr), 2;
    }
    if (optind < argc) {
        fprintf(stderr, "batch_norm_explained: unexpected argument '%s'\n", argv[optind]);
        return usage(stderr), 2;
    }
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "batch_norm_explained: cannot make the folder '%s': %s\n", out_dir, strerror(errno));
        return 2;
    }
    bool ok = true;
    double x[NUMEL], gamma[C], beta[C];
    for (int i = 0; i < NUMEL; i++) x[i] = X[i];
    for (int c = 0; c < C; c++) gamma[c] = GAMMA[c], beta[c] = BETA[c];

    printf("== 1. The input x, shape [2, 2, 2, 2] = (N, C, H, W) ==\n");
    tensor *xt = input_leaf();
    tensor_print(xt);
    tensor_free(xt);
    printf("BatchNorm2d normalises each channel over its M = N*H*W = %d values; eps = %g, momentum = %g,\n"
           "gamma (weight) = [%g, %g], beta (bias) = [%g, %g].\n\n", M, EPS, MOMENTUM, gamma[0], gamma[1], beta[0], beta[1]);

    printf("== 2. Forward, training mode: the batch's own statistics ==\n");
    stats st;
    bn_double(x, gamma, beta, true, NULL, NULL, &st);
    for (int c = 0; c < C; c++) {
        double vals[NUMEL] = {0};
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) vals[at(n, c, s)] = X[at(n, c, s)];
        printf("  channel %d\n", c);
        print_channel("x", vals, c);
        printf("    mean    = sum(x) / M                      = %.6f\n", st.mean[c]);
        printf("    var     = sum((x - mean)^2) / M           = %.6f   (biased: normalises)\n", st.var[c]);
        printf("    var_u   = sum((x - mean)^2) / (M - 1)     = %.6f   (unbiased: for running_var)\n",
               st.var_unbiased[c]);
        printf("    invstd  = 1 / sqrt(var + eps)             = %.6f\n", st.invstd[c]);
        print_channel("xhat", st.xhat, c);
        print_channel("y", st.y, c);
    }
    /* ctorch's module on the same input: its output against the formulas above. */
    nn_module *bn = check(nn_batch_norm2d(NN_BATCH_NORM_OPTIONS(.num_features = C)));
    set_affine(bn);
    nn_batch_norm_module *view = nn_as_batch_norm(bn);
    const float *rm = tensor_data_f32(view->running_mean), *rv = tensor_data_f32(view->running_var);
    printf("  running statistics before: running_mean = [%g, %g], running_var = [%g, %g]\n", rm[0], rm[1], rv[0],
           rv[1]);
    grads fused, composite, numeric;
    tensor *y = fused_pass(bn, &fused);
    double worst = 0;
    for (int i = 0; i < NUMEL; i++) worst = fmax(worst, fabs(tensor_data_f32(y)[i] - st.y[i]));
    tensor_free(y);
    printf("  ctorch's nn_batch_norm2d gives the same y: largest |difference| = %.1e\n", worst);
    printf("  running statistics after (f = momentum = %g):\n", MOMENTUM);
    for (int c = 0; c < C; c++)
        printf("    channel %d: running_mean = (1 - f) * 0 + f * %.6f = %.6f   running_var = (1 - f) * 1 + f * %.6f = "
               "%.6f\n",
               c, st.mean[c], rm[c], st.var_unbiased[c], rv[c]);
    printf("    num_batches_tracked = %lld\n\n", (long long)*tensor_data_i64(view->num_batches_tracked));

    printf("== 3. Backward, training mode: dL/dx, dL/dgamma, dL/dbeta for L = sum(y * dy) ==\n");
    print_upstream();
    printf("  dbeta  = sum(dy)\n"
           "  dgamma = sum(dy * xhat)\n"
           "  dx     = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma)\n");
    by_hand(&st, gamma);
    tensor *rm0 = check(torch_zeros(TORCH_SHAPE(C))), *rv0 = check(torch_ones(TORCH_SHAPE(C)));
    composite_pass(true, rm0, rv0, &composite);
    finite_differences(true, NULL, NULL, &numeric);
    ok &= print_three_ways(&fused, &composite, &numeric);
    for (int c = 0; c < C; c++) {
        double sum = 0;
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) sum += fused.dx[at(n, c, s)];
        printf("  channel %d: sum(dx) = %.1e (0: shifting a whole channel changes nothing)\n", c, sum);
    }
    tensor_free(rm0);
    tensor_free(rv0);

    printf("\n== 4. Eval mode: the running statistics are constants ==\n");
    nn_module_eval(bn);
    double run_mean[C], run_var[C];
    for (int c = 0; c < C; c++) run_mean[c] = rm[c], run_var[c] = rv[c];
    bn_double(x, gamma, beta, false, run_mean, run_var, &st);
    for (int c = 0; c < C; c++) {
        printf("  channel %d: invstd = 1 / sqrt(running_var + eps) = %.6f\n", c, st.invstd[c]);
        print_channel("y", st.y, c);
    }
    printf("  dx = dy * gamma * invstd (no path through the statistics)\n");
    y = fused_pass(bn, &fused);
    tensor_free(y);
    composite_pass(false, view->running_mean, view->running_var, &composite);
    finite_differences(false, run_mean, run_var, &numeric);
    ok &= print_three_ways(&fused, &composite, &numeric);

    printf("\n== 5. A uniform upstream gradient makes dx vanish ==\n");
    ok &= uniform_upstream();

    printf("\n== 6. Checking a layer of your own with torch_gradcheck ==\n");
    ok &= gradcheck_demo();

    printf("\n== 7. Pictures of the autograd graphs, in %s ==\n", out_dir);
    ok &= pictures(out_dir);
    nn_module_free(bn);
    return ok ? 0 : 1;
}
