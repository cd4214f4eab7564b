/* test_module.c — the nn module base: registration rules, train/eval, lookup, repr, state_dict,
 * load_state_dict. Uses a small test-only module type ("Toy") so that the base is tested without
 * any real layer; BatchNorm-specific state_dict tests live in test_batch_norm.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "ctorch.h"

/* ---- a toy module type: one weight [n], optional bias [n], a counter buffer, extra repr ------------- */

typedef struct toy {
    nn_module base;
    int64_t   n;
    int       resets; /* how often reset_parameters ran */
} toy;

static tensor *toy_forward(nn_module *self, tensor *input) {
    (void)self;
    return tensor_retain(input);
}

static torch_status toy_reset(nn_module *self, torch_generator *gen) {
    (void)gen;
    ((toy *)self)->resets++;
    return tensor_fill_(nn_module_get_parameter(self, "weight"), 1.0);
}

static int toy_extra_repr(const nn_module *self, char *buf, size_t len) {
    return snprintf(buf, len, "%lld, flag=True", (long long)((const toy *)self)->n);
}

static const nn_module_ops toy_ops = {
    .type_name = "Toy", .forward = toy_forward, .reset_parameters = toy_reset, .extra_repr = toy_extra_repr};

/* A container type with no extra_repr and no reset (like Sequential). */
static const nn_module_ops box_ops = {.type_name = "Box", .forward = toy_forward};

static nn_module *toy_new(int64_t n, bool with_bias) {
    toy *t = calloc(1, sizeof *t);
    cr_assert_not_null(t);
    nn_module_init(&t->base, &toy_ops);
    t->n = n;
    cr_assert_not_null(nn_module_register_parameter(&t->base, "weight", torch_full(1, &n, 2.0f)));
    if (with_bias) cr_assert_not_null(nn_module_register_parameter(&t->base, "bias", torch_zeros(1, &n)));
    cr_assert_not_null(nn_module_register_buffer(&t->base, "count", torch_scalar_int64(3), true));
    cr_assert_not_null(nn_module_register_buffer(&t->base, "scratch", torch_zeros(1, &n), false));
    return &t->base;
}

static nn_module *box_new(void) {
    nn_module *m = calloc(1, sizeof *m);
    cr_assert_not_null(m);
    nn_module_init(m, &box_ops);
    return m;
}

/* Box( (a): Toy(2), (inner): Box( (b): Toy(3, no bias) ) ) */
static nn_module *tree_new(void) {
    nn_module *root = box_new();
    cr_assert_not_null(nn_module_register_module(root, "a", toy_new(2, true)));
    nn_module *inner = nn_module_register_module(root, "inner", box_new());
    cr_assert_not_null(inner);
    cr_assert_not_null(nn_module_register_module(inner, "b", toy_new(3, false)));
    return root;
}

static void assert_keys(const nn_tensor_dict *d, int n, const char *const *keys) {
    cr_assert_eq(d->count, n, "expected %d keys, got %lld", n, (long long)d->count);
    for (int i = 0; i < n; i++) cr_assert_str_eq(d->items[i].name, keys[i]);
}

/* ---- registration ------------------------------------------------------------------------------- */

Test(module, register_order_flags_and_training_default) {
    nn_module *m = toy_new(4, true);
    cr_assert(m->training, "modules start in training mode, as in PyTorch");
    nn_tensor_dict *p = nn_module_named_parameters(m);
    assert_keys(p, 2, (const char *[]){"weight", "bias"});
    cr_assert(p->items[0].value->requires_grad && p->items[1].value->requires_grad);
    nn_tensor_dict *b = nn_module_named_buffers(m);
    assert_keys(b, 2, (const char *[]){"count", "scratch"}); /* named_buffers includes non-persistent */
    cr_assert_eq(nn_module_get_buffer(m, "count")->dtype, TORCH_INT64);
    nn_tensor_dict_free(p);
    nn_tensor_dict_free(b);
    nn_module_free(m);
}

Test(module, register_name_rules) {
    nn_module *m = toy_new(2, false);
    int64_t two = 2;
    struct { const char *name; const char *msg; } cases[] = {
        {"", "register_parameter: parameter name can't be empty string \"\""},
        {"a.b", "register_parameter: parameter name can't contain \".\", got: a.b"},
        {"weight", "register_parameter: attribute 'weight' already exists"},
        {"count", "register_parameter: attribute 'count' already exists"}, /* buffers share the namespace */
        {NULL, "register_parameter: parameter name is NULL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        torch_clear_error();
        /* the refused tensor is freed by the call (LSan would report a leak otherwise) */
        cr_assert_null(nn_module_register_parameter(m, cases[i].name, torch_zeros(1, &two)));
        cr_assert_eq(torch_last_status(), TORCH_ERR_INVALID_ARGUMENT);
        cr_assert_str_eq(torch_last_error(), cases[i].msg);
    }
    cr_assert_null(nn_module_register_buffer(m, "x.y", torch_zeros(1, &two), true));
    cr_assert_str_eq(torch_last_error(), "register_buffer: buffer name can't contain \".\", got: x.y");
    cr_assert_null(nn_module_register_buffer(m, "weight", torch_zeros(1, &two), true));
    cr_assert_str_eq(torch_last_error(), "register_buffer: attribute 'weight' already exists");
    cr_assert_null(nn_module_register_module(m, "", toy_new(1, false)));
    cr_assert_str_eq(torch_last_error(), "register_module: module name can't be empty string \"\"");
    cr_assert_null(nn_module_register_module(m, "count", toy_new(1, false)));
    cr_assert_str_eq(torch_last_error(), "register_module: attribute 'count' already exists");
    cr_assert_null(nn_module_register_parameter(m, "idx", torch_scalar_int64(1)));
    cr_assert_not_null(strstr(torch_last_error(), "only Tensors of floating point dtype can require gradients"));
    /* nothing was added by the refused calls */
    nn_tensor_dict *sd = nn_module_state_dict(m);
    assert_keys(sd, 2, (const char *[]){"weight", "count"});
    nn_tensor_dict_free(sd);
    nn_module_free(m);
}

Test(module, register_non_leaf_parameter_refused) {
    nn_module *m = box_new();
    int64_t two = 2;
    tensor *leaf = torch_ones(1, &two);
    tensor_set_requires_grad(leaf, true);
    /* a fake non-leaf: anything with a grad_fn. Build one through a recorded node. */
    static const ag_function fake = {.name = "FakeBackward0"};
    tensor *out = torch_ones(1, &two);
    cr_assert_not_null(ag_record(&fake, out, 1, (tensor *const[]){leaf}));
    cr_assert_null(nn_module_register_parameter(m, "w", out)); /* consumes out */
    cr_assert_not_null(strstr(torch_last_error(), "Cannot assign non-leaf Tensor to parameter 'w'"));
    tensor_free(leaf);
    nn_module_free(m);
}

/* ---- train / eval, zero_grad, reset_parameters ----------------------------------------------------- */

Test(module, train_eval_propagate_to_all_descendants) {
    nn_module *root = tree_new();
    nn_module *a = nn_module_get_child(root, "a"), *inner = nn_module_get_child(root, "inner");
    nn_module *b = nn_module_get_child(root, "inner.b");
    cr_assert(a && inner && b);
    nn_module_eval(root);
    cr_assert(!root->training && !a->training && !inner->training && !b->training);
    nn_module_train(inner, true); /* a subtree only */
    cr_assert(!root->training && !a->training && inner->training && b->training);
    nn_module_train(root, true);
    cr_assert(root->training && a->training);
    nn_module_free(root);
}

Test(module, zero_grad_drops_every_gradient) {
    nn_module *root = tree_new();
    tensor *wa = nn_module_get_parameter(root, "a.weight"), *wb = nn_module_get_parameter(root, "inner.b.weight");
    wa->grad = torch_ones_like(wa);
    wb->grad = torch_ones_like(wb);
    nn_module_zero_grad(root);
    cr_assert_null(tensor_grad(wa));
    cr_assert_null(tensor_grad(wb));
    nn_module_free(root);
}

Test(module, zero_grad_in_place_keeps_the_tensors_and_zeroes_them) {
    nn_module *root = tree_new();
    tensor *wa = nn_module_get_parameter(root, "a.weight"), *wb = nn_module_get_parameter(root, "inner.b.weight");
    wa->grad = torch_ones_like(wa);
    tensor *ga = wa->grad;
    nn_module_zero_grad_in_place(root); /* wb has no gradient: stays without one */
    cr_assert_eq(tensor_grad(wa), ga);
    cr_assert_null(tensor_grad(wb));
    for (int64_t i = 0; i < ga->numel; i++) cr_assert_eq(tensor_data_f32(ga)[i], 0.0f);
    nn_module_free(root);
}

Test(module, reset_parameters_recurses_in_order) {
    nn_module *root = tree_new();
    tensor *wb = nn_module_get_parameter(root, "inner.b.weight");
    cr_assert_eq(tensor_fill_(wb, 7.0), TORCH_ERR_INVALID_STATE, "a parameter is written under no_grad only");
    bool grad_mode = torch_set_grad_enabled(false);
    cr_assert_eq(tensor_fill_(wb, 7.0), TORCH_OK);
    torch_set_grad_enabled(grad_mode);
    cr_assert_eq(nn_module_reset_parameters(root, NULL), TORCH_OK);
    cr_assert(torch_is_grad_enabled(), "reset_parameters restores grad mode");
    cr_assert_eq(((toy *)nn_module_get_child(root, "a"))->resets, 1);
    cr_assert_eq(((toy *)nn_module_get_child(root, "inner.b"))->resets, 1);
    cr_assert_float_eq(tensor_data_f32(wb)[2], 1.0f, 0);
    nn_module_free(root);
}

/* ---- lookup ------------------------------------------------------------------------------------ */

Test(module, get_by_dotted_key) {
    nn_module *root = tree_new();
    cr_assert_not_null(nn_module_get_parameter(root, "a.weight"));
    cr_assert_not_null(nn_module_get_parameter(root, "a.bias"));
    cr_assert_not_null(nn_module_get_parameter(root, "inner.b.weight"));
    cr_assert_eq(nn_module_get_parameter(root, "inner.b.weight")->shape[0], 3);
    cr_assert_null(nn_module_get_parameter(root, "inner.b.bias"));
    cr_assert_null(nn_module_get_parameter(root, "a.count"), "a buffer is not a parameter");
    cr_assert_not_null(nn_module_get_buffer(root, "a.count"));
    cr_assert_not_null(nn_module_get_buffer(root, "inner.b.scratch"));
    cr_assert_null(nn_module_get_buffer(root, "nope.count"));
    cr_assert_null(nn_module_get_buffer(root, "a."));
    cr_assert_null(nn_module_get_child(root, "inner.c"));
    cr_assert_null(nn_module_get_child(root, "in"), "prefix of a name is not the name");
    cr_assert_null(nn_module_get_parameter(NULL, "a"));
    cr_assert_null(nn_module_get_parameter(root, NULL));
    nn_module_free(root);
}

/* ---- repr (PyTorch's format, compared with what PyTorch prints for the same tree shape) --------- */

Test(module, repr_leaf_container_and_nested) {
    nn_module *t = toy_new(5, true);
    char *s = nn_module_repr(t);
    cr_assert_str_eq(s, "Toy(5, flag=True)");
    free(s);
    nn_module_free(t);

    nn_module *empty = box_new();
    s = nn_module_repr(empty);
    cr_assert_str_eq(s, "Box()");
    free(s);
    nn_module_free(empty);

    nn_module *root = tree_new();
    s = nn_module_repr(root);
    cr_assert_str_eq(s, "Box(\n"
                        "  (a): Toy(2, flag=True)\n"
                        "  (inner): Box(\n"
                        "    (b): Toy(3, flag=True)\n"
                        "  )\n"
                        ")");
    free(s);
    /* extra_repr and children together: extra lines first, then the children */
    nn_module *c = toy_new(1, false);
    cr_assert_not_null(nn_module_register_module(c, "child", toy_new(2, false)));
    s = nn_module_repr(c);
    cr_assert_str_eq(s, "Toy(\n  1, flag=True\n  (child): Toy(2, flag=True)\n)");
    free(s);
    nn_module_free(c);
    nn_module_free(root);
}

/* ---- state_dict --------------------------------------------------------------------------------- */

Test(module, state_dict_order_parameters_buffers_children) {
    nn_module *root = tree_new();
    cr_assert_not_null(nn_module_register_buffer(root, "own", torch_scalar(1.0f), true));
    nn_tensor_dict *sd = nn_module_state_dict(root);
    /* own params, own persistent buffers, then children; non-persistent "scratch" is absent */
    assert_keys(sd, 6, (const char *[]){"own", "a.weight", "a.bias", "a.count", "inner.b.weight", "inner.b.count"});
    /* values are the module's live tensors */
    cr_assert_eq(nn_tensor_dict_get(sd, "a.weight"), nn_module_get_parameter(root, "a.weight"));
    cr_assert_null(nn_tensor_dict_get(sd, "a.scratch"));
    nn_tensor_dict *np = nn_module_named_parameters(root);
    assert_keys(np, 3, (const char *[]){"a.weight", "a.bias", "inner.b.weight"});
    nn_tensor_dict *nb = nn_module_named_buffers(root);
    assert_keys(nb, 5, (const char *[]){"own", "a.count", "a.scratch", "inner.b.count", "inner.b.scratch"});
    nn_tensor_dict_free(sd);
    nn_tensor_dict_free(np);
    nn_tensor_dict_free(nb);
    nn_module_free(root);
}

Test(module, tensor_dict_set_get_replace) {
    nn_tensor_dict *d = nn_tensor_dict_new();
    tensor *x = torch_scalar(1.0f), *y = torch_scalar(2.0f);
    cr_assert_eq(nn_tensor_dict_set(d, "x", x), TORCH_OK);
    cr_assert_eq(nn_tensor_dict_set(d, "y", y), TORCH_OK);
    cr_assert_eq(nn_tensor_dict_set(d, "x", y), TORCH_OK); /* replace keeps the position */
    cr_assert_eq(nn_tensor_dict_set(d, "x", y), TORCH_OK); /* same value again */
    cr_assert_eq(d->count, 2);
    cr_assert_str_eq(d->items[0].name, "x");
    cr_assert_eq(nn_tensor_dict_get(d, "x"), y);
    cr_assert_null(nn_tensor_dict_get(d, "z"));
    cr_assert_eq(nn_tensor_dict_set(d, NULL, x), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_eq(nn_tensor_dict_set(d, "z", NULL), TORCH_ERR_INVALID_ARGUMENT);
    /* many keys: the index stays right as the arrays grow */
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(nn_tensor_dict_set(d, key, i % 2 ? x : y), TORCH_OK);
    }
    cr_assert_eq(d->count, 202);
    cr_assert_eq(nn_tensor_dict_get(d, "k137"), x);
    cr_assert_str_eq(d->items[150].name, "k148");
    tensor_free(x);
    tensor_free(y);
    nn_tensor_dict_free(d);
    nn_tensor_dict_free(NULL);
}

/* ---- load_state_dict ---------------------------------------------------------------------------- */

/* A checkpoint for tree_new() with distinct values: a.weight = [10, 11], a.bias = [20, 21],
 * a.count = 5, inner.b.weight = [30, 31, 32], inner.b.count = 6. */
static nn_tensor_dict *checkpoint_new(void) {
    nn_tensor_dict *d = nn_tensor_dict_new();
    tensor *t[5] = {torch_tensor((const float[]){10, 11}, 1, (const int64_t[]){2}),
                    torch_tensor((const float[]){20, 21}, 1, (const int64_t[]){2}), torch_scalar_int64(5),
                    torch_tensor((const float[]){30, 31, 32}, 1, (const int64_t[]){3}), torch_scalar_int64(6)};
    const char *keys[5] = {"a.weight", "a.bias", "a.count", "inner.b.weight", "inner.b.count"};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(nn_tensor_dict_set(d, keys[i], t[i]), TORCH_OK);
        tensor_free(t[i]);
    }
    return d;
}

/* Snapshot of all state values, to check that a refused load changed nothing. */
typedef struct snapshot {
    float   aw[2], ab[2], bw[3];
    int64_t ac, bc;
} snapshot;

static snapshot take(nn_module *root) {
    snapshot s;
    memset(&s, 0, sizeof s); /* padding too, for memcmp */
    memcpy(s.aw, tensor_data_f32(nn_module_get_parameter(root, "a.weight")), sizeof s.aw);
    memcpy(s.ab, tensor_data_f32(nn_module_get_parameter(root, "a.bias")), sizeof s.ab);
    memcpy(s.bw, tensor_data_f32(nn_module_get_parameter(root, "inner.b.weight")), sizeof s.bw);
    s.ac = *tensor_data_i64(nn_module_get_buffer(root, "a.count"));
    s.bc = *tensor_data_i64(nn_module_get_buffer(root, "inner.b.count"));
    return s;
}

static void assert_unchanged(nn_module *root, const snapshot *before) {
    snapshot now = take(root);
    cr_assert_eq(memcmp(&now, before, sizeof now), 0, "a refused load_state_dict changed the module");
}

Test(module, load_state_dict_round_trip) {
    nn_module *root = tree_new();
    nn_tensor_dict *d = checkpoint_new();
    cr_assert_eq(nn_module_load_state_dict(root, d, true), TORCH_OK);
    snapshot s = take(root);
    cr_assert(s.aw[0] == 10 && s.aw[1] == 11 && s.ab[1] == 21 && s.bw[2] == 32 && s.ac == 5 && s.bc == 6);
    /* the loaded module's own state_dict loads back into a fresh module: same values */
    nn_tensor_dict *sd = nn_module_state_dict(root);
    nn_module *other = tree_new();
    cr_assert_eq(nn_module_load_state_dict(other, sd, true), TORCH_OK);
    assert_unchanged(other, &s);
    /* loading a module's state into itself is a no-op */
    cr_assert_eq(nn_module_load_state_dict(root, sd, true), TORCH_OK);
    assert_unchanged(root, &s);
    /* the copies are copies: changing the checkpoint later does not touch the module */
    tensor_fill_(nn_tensor_dict_get(d, "a.weight"), -1.0);
    assert_unchanged(root, &s);
    nn_tensor_dict_free(sd);
    nn_tensor_dict_free(d);
    nn_module_free(other);
    nn_module_free(root);
}

Test(module, load_state_dict_non_contiguous_source) {
    nn_module *root = tree_new();
    nn_tensor_dict *d = checkpoint_new();
    /* a strided view [40, 42, 44] of a 6-element tensor */
    tensor *base = torch_tensor((const float[]){40, 41, 42, 43, 44, 45}, 1, (const int64_t[]){6});
    tensor *view = tensor_as_strided(base, 1, (const int64_t[]){3}, (const int64_t[]){2}, 0);
    nn_tensor_dict_set(d, "inner.b.weight", view);
    cr_assert_eq(nn_module_load_state_dict(root, d, true), TORCH_OK);
    float *bw = tensor_data_f32(nn_module_get_parameter(root, "inner.b.weight"));
    cr_assert(bw[0] == 40 && bw[1] == 42 && bw[2] == 44);
    tensor_free(view);
    tensor_free(base);
    nn_tensor_dict_free(d);
    nn_module_free(root);
}

Test(module, load_state_dict_missing_key) {
    nn_module *root = tree_new();
    snapshot before = take(root);
    nn_tensor_dict *full = checkpoint_new(), *d = nn_tensor_dict_new();
    for (int64_t i = 0; i < full->count; i++)
        if (strcmp(full->items[i].name, "a.bias") != 0) nn_tensor_dict_set(d, full->items[i].name, full->items[i].value);
    torch_clear_error();
    cr_assert_eq(nn_module_load_state_dict(root, d, true), TORCH_ERR_KEY);
    cr_assert_str_eq(torch_last_error(), "load_state_dict: missing key \"a.bias\"");
    assert_unchanged(root, &before);
    /* non-strict: loads what is there, leaves a.bias alone */
    cr_assert_eq(nn_module_load_state_dict(root, d, false), TORCH_OK);
    snapshot s = take(root);
    cr_assert(s.aw[0] == 10 && s.ab[0] == before.ab[0] && s.ab[1] == before.ab[1] && s.bc == 6);
    nn_tensor_dict_free(full);
    nn_tensor_dict_free(d);
    nn_module_free(root);
}

Test(module, load_state_dict_several_missing_keys) {
    nn_module *root = tree_new();
    nn_tensor_dict *d = nn_tensor_dict_new();
    cr_assert_eq(nn_module_load_state_dict(root, d, true), TORCH_ERR_KEY);
    cr_assert_str_eq(torch_last_error(), "load_state_dict: missing key \"a.weight\" (and 4 more missing keys)");
    nn_tensor_dict_free(d);
    nn_module_free(root);
}

Test(module, load_state_dict_unexpected_key) {
    nn_module *root = tree_new();
    snapshot before = take(root);
    nn_tensor_dict *d = checkpoint_new();
    tensor *extra = torch_scalar(1.0f);
    nn_tensor_dict_set(d, "a.scratch", extra); /* non-persistent buffers are not part of the state */
    cr_assert_eq(nn_module_load_state_dict(root, d, true), TORCH_ERR_KEY);
    cr_assert_str_eq(torch_last_error(), "load_state_dict: unexpected key \"a.scratch\"");
    assert_unchanged(root, &before);
    cr_assert_eq(nn_module_load_state_dict(root, d, false), TORCH_OK, "non-strict ignores it");
    cr_assert_eq(take(root).bc, 6);
    tensor_free(extra);
    nn_tensor_dict_free(d);
    nn_module_free(root);
}

Test(module, load_state_dict_size_and_dtype_mismatch_even_non_strict) {
    nn_module *root = tree_new();
    snapshot before = take(root);
    nn_tensor_dict *d = checkpoint_new();
    tensor *wrong = torch_zeros(1, (const int64_t[]){8});
    nn_tensor_dict_set(d, "inner.b.weight", wrong);
    for (int strict = 0; strict <= 1; strict++) {
        cr_assert_eq(nn_module_load_state_dict(root, d, strict), TORCH_ERR_KEY);
        cr_assert_str_eq(torch_last_error(), "load_state_dict: size mismatch for \"inner.b.weight\": checkpoint [8], model [3]");
        assert_unchanged(root, &before); /* a.weight comes earlier and was not copied either */
    }
    tensor_free(wrong);
    nn_tensor_dict_free(d);
    d = checkpoint_new();
    tensor *f = torch_scalar(5.0f);
    nn_tensor_dict_set(d, "a.count", f);
    cr_assert_eq(nn_module_load_state_dict(root, d, false), TORCH_ERR_KEY);
    cr_assert_str_eq(torch_last_error(), "load_state_dict: dtype mismatch for \"a.count\": checkpoint float32, model int64");
    assert_unchanged(root, &before);
    tensor_free(f);
    nn_tensor_dict_free(d);
    nn_module_free(root);
}

Test(module, load_state_dict_null_arguments) {
    nn_module *root = tree_new();
    cr_assert_eq(nn_module_load_state_dict(root, NULL, true), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_eq(nn_module_load_state_dict(NULL, NULL, true), TORCH_ERR_INVALID_ARGUMENT);
    cr_assert_null(nn_module_state_dict(NULL));
    cr_assert_null(nn_module_forward(NULL, NULL));
    cr_assert_null(nn_module_forward(root, NULL));
    cr_assert_str_eq(torch_last_error(), "Box: input is NULL");
    nn_module_free(NULL);
    nn_module_free(root);
}

Test(module, forward_dispatches) {
    nn_module *t = toy_new(2, false);
    tensor *x = torch_scalar(3.0f);
    tensor *y = nn_module_forward(t, x);
    cr_assert_eq(y, x);
    tensor_free(y);
    tensor_free(x);
    nn_module_free(t);
}

/* ---- the module tree and deep copies ---------------------------------------------------------------- */

Test(module, named_modules_in_pre_order) {
    nn_module *root = tree_new();
    nn_module_list *l = nn_module_named_modules(root);
    cr_assert_not_null(l);
    const char *names[] = {"", "a", "inner", "inner.b"};
    cr_assert_eq(l->count, 4);
    for (int i = 0; i < 4; i++) cr_expect_str_eq(l->items[i].name, names[i]);
    cr_expect(l->items[0].value == root && l->items[3].value == nn_module_get_child(root, "inner.b"));
    nn_module_list_free(l);
    cr_expect_null(nn_module_named_modules(NULL));
    nn_module_list_free(NULL);
    nn_module_free(root);
}

Test(module, clone_refuses_what_it_cannot_copy) {
    nn_module *root = tree_new();
    cr_expect_null(nn_module_clone(root));
    cr_expect_str_eq(torch_last_error(), "nn_module_clone: Box cannot be copied: its type has no new_like");
    nn_module *layers[] = {nn_relu(), toy_new(2, false)};
    nn_module *seq = nn_sequential(2, layers);
    cr_expect_null(nn_module_clone(seq));
    cr_expect_str_eq(torch_last_error(), "nn_module_clone: Toy '1' cannot be copied: its type has no new_like");
    nn_module *seq2 = nn_sequential(1, (nn_module *[]){nn_relu()});
    cr_assert_not_null(nn_module_register_buffer(seq2, "extra", torch_scalar(1.0f), true));
    cr_expect_null(nn_module_clone(seq2));
    cr_expect_str_eq(torch_last_error(), "nn_module_clone: Sequential cannot be copied: it has 1 buffers, its "
                                         "constructor makes 0");
    cr_expect_null(nn_module_clone(NULL));
    nn_module_free(seq2);
    nn_module_free(seq);
    nn_module_free(root);
}
