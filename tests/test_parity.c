/* test_parity.c — a reference CNN trained by PyTorch loads into ctorch's model and computes what
 * PyTorch computes.
 *
 * References (scripts/make_parity_fixture.py, PyTorch 1.13, committed):
 *   fixtures/parity_reference_cnn.safetensors  the state_dict of examples/models.h's reference_cnn
 *       after 300 SGD steps on Fashion-MNIST (real BatchNorm statistics, num_batches_tracked 300),
 *       with PyTorch's full-test-set accuracy in the metadata;
 *   fixtures/parity_batch.safetensors  16 normalised test images, their labels, PyTorch's
 *       eval-mode logits (float64 forward from the float32 weights) and predictions, and one
 *       train-mode forward + backward on the same images (logits, loss, updated running
 *       statistics, every parameter gradient), also float64.
 * Tolerance: |ctorch - PyTorch| <= 1e-4 * max(1, |PyTorch|) element-wise (the worst absolute and
 * relative errors are logged); predictions must be equal. The checks that need the Fashion-MNIST
 * data set itself (ctorch's inputs, all 10,000 predictions) are in test_fashion_mnist.c. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parity_fixtures.h"

#define TOL      1e-4
#define N_IMAGES 16

TestSuite(parity);

/* ---- helpers ------------------------------------------------------------------------------------ */

/* Asserts got ~ want element-wise (same shape, float32) and logs the worst errors. */
static void expect_close(const char *what, const tensor *got, const tensor *want) {
    cr_assert_not_null(got, "%s: %s", what, torch_last_error());
    cr_assert(tensor_same_shape(got, want), "%s: shape differs from PyTorch's", what);
    tensor *g = tensor_contiguous(got);
    const float *a = tensor_data_f32(g), *b = tensor_data_f32(want);
    cr_assert(a && b, "%s: expected float32 tensors", what);
    double max_abs = 0, max_rel = 0, worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < want->numel; i++) {
        double d = fabs((double)a[i] - (double)b[i]), scale = fmax(1.0, fabs((double)b[i]));
        max_abs = fmax(max_abs, d);
        if (b[i] != 0) max_rel = fmax(max_rel, d / fabs((double)b[i]));
        if (!(d / scale <= worst)) worst = d / scale, at = i; /* NaN-safe: a NaN becomes the worst */
    }
    cr_log_info("%-22s max abs err %.3g, max rel err %.3g (worst at %lld: ctorch %.8g, PyTorch %.8g)", what,
                max_abs, max_rel, (long long)at, (double)a[at], (double)b[at]);
    cr_expect(worst <= TOL, "%s: element %lld is %.8g, PyTorch %.8g (error %.3g > %.0e)", what, (long long)at,
              (double)a[at], (double)b[at], worst, TOL);
    tensor_free(g);
}

static void expect_state_equals(const nn_module *m, const nn_tensor_dict *snap, const char *when) {
    nn_tensor_dict *sd = nn_module_state_dict(m);
    cr_assert_eq(sd->count, snap->count);
    for (int64_t i = 0; i < sd->count; i++)
        cr_expect(bitwise_equal(sd->items[i].value, snap->items[i].value), "%s: \"%s\" changed", when,
                  sd->items[i].name);
    nn_tensor_dict_free(sd);
}

/* ---- the state_dict layout ---------------------------------------------------------------------- */

Test(parity, state_dict_keys_shapes_and_dtypes_equal_pytorchs) {
    torch_generator g = torch_generator_new(7);
    nn_module *m = reference_cnn(&g);
    cr_assert_not_null(m, "%s", torch_last_error());
    nn_tensor_dict *ours = nn_module_state_dict(m);
    io_metadata *md = NULL;
    nn_tensor_dict *file = parity_load(PARITY_WEIGHTS, &md);
    cr_assert_eq(ours->count, file->count, "ctorch has %lld entries, PyTorch's file %lld", (long long)ours->count,
                 (long long)file->count);
    char a[96], b[96];
    for (int64_t i = 0; i < ours->count; i++) {
        const tensor *x = ours->items[i].value, *y = file->items[i].value;
        cr_expect_str_eq(ours->items[i].name, file->items[i].name, "entry %lld", (long long)i);
        cr_expect(tensor_same_shape(x, y), "\"%s\": ctorch %s, PyTorch %s", ours->items[i].name,
                  torch_shape_str(x->ndim, x->shape, a, sizeof a), torch_shape_str(y->ndim, y->shape, b, sizeof b));
        cr_expect_eq(x->dtype, y->dtype, "\"%s\": ctorch %s, PyTorch %s", ours->items[i].name,
                     torch_dtype_name(x->dtype), torch_dtype_name(y->dtype));
    }
    /* The weights stay well under the 1 MB fixture budget: 50,890 float32 values + 2 counters. */
    int64_t n = 0;
    for (int64_t i = 0; i < file->count; i++) n += file->items[i].value->numel;
    cr_expect_eq(n, 288 + 4 * 32 + 1 + 18432 + 4 * 64 + 1 + 31360 + 10);
    cr_expect_str_eq(io_metadata_get(md, "steps"), "300");
    io_metadata_free(md);
    nn_tensor_dict_free(file);
    nn_tensor_dict_free(ours);
    nn_module_free(m);
}

Test(parity, num_batches_tracked_reads_back_as_int64) {
    nn_module *m = parity_model();
    nn_tensor_dict *file = parity_load(PARITY_WEIGHTS, NULL);
    const char *keys[] = {"1.num_batches_tracked", "5.num_batches_tracked"};
    for (int k = 0; k < 2; k++) {
        tensor *t = nn_module_get_buffer(m, keys[k]);
        cr_assert_not_null(t, "%s", keys[k]);
        cr_assert_eq(t->dtype, TORCH_INT64, "%s is %s", keys[k], torch_dtype_name(t->dtype));
        cr_assert_eq(t->ndim, 0);
        cr_expect_eq(*tensor_data_i64(t), 300, "%s = %lld", keys[k], (long long)*tensor_data_i64(t));
        cr_expect_eq(*tensor_data_i64(t), *tensor_data_i64(parity_get(file, keys[k])));
    }
    nn_tensor_dict_free(file);
    nn_module_free(m);
}

/* ---- eval mode: the quality bar ------------------------------------------------------------------- */

Test(parity, eval_logits_and_predictions_equal_pytorchs) {
    nn_module *m = parity_model();
    nn_tensor_dict *batch = parity_load(PARITY_BATCH, NULL);
    tensor *x = parity_get(batch, "images"), *want = parity_get(batch, "logits"), *pred = parity_get(batch, "predictions");
    cr_assert_eq(x->shape[0], N_IMAGES);

    nn_module_eval(m);
    bool prev = torch_set_grad_enabled(false);
    tensor *y = nn_module_forward(m, x);
    torch_set_grad_enabled(prev);
    cr_assert_not_null(y, "%s", torch_last_error());
    cr_assert_eq(y->ndim, 2);
    cr_assert(y->shape[0] == N_IMAGES && y->shape[1] == N_CLASSES);

    expect_close("eval logits (f64 ref)", y, want);
    expect_close("eval logits (f32 ref)", y, parity_get(batch, "logits_f32"));

    tensor *yc = tensor_contiguous(y);
    const float *l = tensor_data_f32(yc);
    const int64_t *p = tensor_data_i64(pred), *labels = tensor_data_i64(parity_get(batch, "labels"));
    int wrong = 0;
    for (int i = 0; i < N_IMAGES; i++) {
        int64_t ours = argmax_row(l + i * N_CLASSES, N_CLASSES);
        cr_expect_eq(ours, p[i], "image %d: ctorch predicts %lld, PyTorch %lld", i, (long long)ours, (long long)p[i]);
        wrong += ours != labels[i];
    }
    /* The fixture holds one image per class plus six that PyTorch gets wrong: ctorch must make
     * the same mistakes. */
    cr_expect_eq(wrong, 6);
    tensor_free(yc);
    tensor_free(y);
    nn_tensor_dict_free(batch);
    nn_module_free(m);
}

/* ---- train mode: one forward + backward on the same batch ---------------------------------------- */

Test(parity, train_step_logits_running_stats_and_gradients_equal_pytorchs) {
    nn_module *m = parity_model();
    nn_tensor_dict *batch = parity_load(PARITY_BATCH, NULL);
    nn_module_train(m, true);
    tensor *y = nn_module_forward(m, parity_get(batch, "images"));
    expect_close("train logits", y, parity_get(batch, "train.logits"));
    tensor *loss = nnf_cross_entropy(y, parity_get(batch, "labels"));
    expect_close("train loss", loss, parity_get(batch, "train.loss"));

    char key[64];
    const char *bns[] = {"1", "5"}, *stats[] = {"running_mean", "running_var"};
    for (int b = 0; b < 2; b++) {
        for (int s = 0; s < 2; s++) {
            snprintf(key, sizeof key, "%s.%s", bns[b], stats[s]);
            char ref[80];
            snprintf(ref, sizeof ref, "train.%s", key);
            expect_close(key, nn_module_get_buffer(m, key), parity_get(batch, ref));
        }
        snprintf(key, sizeof key, "%s.num_batches_tracked", bns[b]);
        char ref[80];
        snprintf(ref, sizeof ref, "train.%s", key);
        cr_expect_eq(*tensor_data_i64(nn_module_get_buffer(m, key)), *tensor_data_i64(parity_get(batch, ref)));
        cr_expect_eq(*tensor_data_i64(nn_module_get_buffer(m, key)), 301);
    }

    cr_assert_eq(tensor_backward(loss, NULL, false), TORCH_OK, "%s", torch_last_error());
    nn_tensor_dict *params = nn_module_named_parameters(m);
    cr_assert_eq(params->count, 8);
    for (int64_t i = 0; i < params->count; i++) {
        char ref[80], what[80];
        snprintf(ref, sizeof ref, "grad.%s", params->items[i].name);
        snprintf(what, sizeof what, "grad %s", params->items[i].name);
        cr_assert_not_null(params->items[i].value->grad, "%s has no gradient", params->items[i].name);
        expect_close(what, params->items[i].value->grad, parity_get(batch, ref));
    }
    nn_tensor_dict_free(params);
    tensor_free(loss);
    tensor_free(y);
    nn_tensor_dict_free(batch);
    nn_module_free(m);
}

/* ---- strict loading of a broken export ------------------------------------------------------------ */

typedef enum { DROP, EXTRA, RESHAPE } corruption;

/* The fixture's state_dict with every value changed (so a partial copy would show) and one
 * corruption applied to key, written to path. */
static void write_broken(const char *path, corruption how, const char *key) {
    nn_tensor_dict *file = parity_load(PARITY_WEIGHTS, NULL), *out = nn_tensor_dict_new();
    for (int64_t i = 0; i < file->count; i++) {
        tensor *t = file->items[i].value;
        if (t->dtype == TORCH_INT64)
            *tensor_data_i64(t) += 1000;
        else
            for (int64_t j = 0; j < t->numel; j++) tensor_data_f32(t)[j] = 2 * tensor_data_f32(t)[j] + 1;
        if (strcmp(file->items[i].name, key) == 0 && how == DROP) continue;
        if (strcmp(file->items[i].name, key) == 0 && how == RESHAPE) {
            tensor *r = torch_zeros(TORCH_SHAPE(10, 784));
            cr_assert_eq(nn_tensor_dict_set(out, key, r), TORCH_OK);
            tensor_free(r);
            continue;
        }
        cr_assert_eq(nn_tensor_dict_set(out, file->items[i].name, t), TORCH_OK);
    }
    if (how == EXTRA) {
        tensor *e = torch_ones(TORCH_SHAPE(3));
        cr_assert_eq(nn_tensor_dict_set(out, key, e), TORCH_OK);
        tensor_free(e);
    }
    cr_assert_eq(io_safetensors_save(out, NULL, path), TORCH_OK, "%s", torch_last_error());
    nn_tensor_dict_free(out);
    nn_tensor_dict_free(file);
}

Test(parity, strict_load_of_a_broken_export_names_the_key_and_changes_nothing) {
    char dir[] = "/tmp/ctorch_parity_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/broken.safetensors", dir);
    static const struct {
        corruption  how;
        const char *key, *message;
    } cases[] = {
        {DROP, "5.running_var", "load_state_dict: missing key \"5.running_var\""},
        {DROP, "0.weight", "load_state_dict: missing key \"0.weight\""},
        {DROP, "9.bias", "load_state_dict: missing key \"9.bias\""},
        {EXTRA, "9.scale", "load_state_dict: unexpected key \"9.scale\""},
        {RESHAPE, "9.weight", "load_state_dict: size mismatch for \"9.weight\": checkpoint [10, 784], model [10, 3136]"},
    };
    nn_module *m = parity_model();
    nn_tensor_dict *before = snapshot(m);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        write_broken(path, cases[c].how, cases[c].key);
        torch_status st = nn_module_load(m, path, true);
        cr_expect_eq(st, TORCH_ERR_KEY, "%s: status %d", cases[c].key, (int)st);
        cr_expect(strstr(torch_last_error(), cases[c].message), "%s: got \"%s\"", cases[c].key, torch_last_error());
        cr_expect(strstr(torch_last_error(), "broken.safetensors"), "the message names the file: \"%s\"",
                  torch_last_error());
        expect_state_equals(m, before, cases[c].key);
    }
    /* And the model still computes PyTorch's logits after the refused loads. */
    nn_tensor_dict *batch = parity_load(PARITY_BATCH, NULL);
    nn_module_eval(m);
    bool prev = torch_set_grad_enabled(false);
    tensor *y = nn_module_forward(m, parity_get(batch, "images"));
    torch_set_grad_enabled(prev);
    expect_close("logits after refusals", y, parity_get(batch, "logits"));
    tensor_free(y);
    nn_tensor_dict_free(batch);
    nn_tensor_dict_free(before);
    nn_module_free(m);
    unlink(path);
    rmdir(dir);
}
