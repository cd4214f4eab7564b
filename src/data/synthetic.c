/* synthetic.c — ten classes of shapes drawn at random, for machines without a real data set. */
#include "data.h"

#include <math.h>
#include <stdlib.h>

/* ---- synthetic shapes -------------------------------------------------------------------------- */

static const char *const shape_names[DATA_SYNTHETIC_CLASSES] = {
    "horizontal bar", "vertical bar", "cross",        "square outline", "filled square",
    "circle",         "diagonal",     "anti-diagonal", "two dots",      "triangle"};

const char *data_synthetic_class_name(int64_t label) {
    return label >= 0 && label < DATA_SYNTHETIC_CLASSES ? shape_names[label] : "?";
}

/* Distance from (px, py) to the segment (ax, ay)-(bx, by). */
static double seg_dist(double px, double py, double ax, double ay, double bx, double by) {
    double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
    double t = l2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / l2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double ex = px - (ax + t * dx), ey = py - (ay + t * dy);
    return sqrt(ex * ex + ey * ey);
}

/* Distance from a pixel centre to the shape's stroke (0 inside filled shapes). */
static double shape_dist(int cls, double x, double y, double cx, double cy, double s, double r) {
    double ax = fabs(x - cx), ay = fabs(y - cy), cheb = ax > ay ? ax : ay;
    switch (cls) {
    case 0: return seg_dist(x, y, cx - s, cy, cx + s, cy);
    case 1: return seg_dist(x, y, cx, cy - s, cx, cy + s);
    case 2: return fmin(seg_dist(x, y, cx - s, cy, cx + s, cy), seg_dist(x, y, cx, cy - s, cx, cy + s));
    case 3: return fabs(cheb - s);
    case 4: return fmax(cheb - s, 0.0);
    case 5: return fabs(hypot(x - cx, y - cy) - s);
    case 6: return seg_dist(x, y, cx - s, cy - s, cx + s, cy + s);
    case 7: return seg_dist(x, y, cx - s, cy + s, cx + s, cy - s);
    case 8: return fmax(fmin(hypot(x - cx + s, y - cy), hypot(x - cx - s, y - cy)) - r, 0.0);
    default: /* 9: triangle outline */
        return fmin(fmin(seg_dist(x, y, cx, cy - s, cx - s, cy + s), seg_dist(x, y, cx - s, cy + s, cx + s, cy + s)),
                    seg_dist(x, y, cx + s, cy + s, cx, cy - s));
    }
}

data_dataset *data_synthetic_shapes(int64_t n, torch_generator *gen, float mean, float std) {
    static const char *fname = "data_synthetic_shapes";
    enum { H = 28, W = 28 };
    if (n < 0) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: n must be non-negative (got %lld)", fname, (long long)n);
        return NULL;
    }
    if (!(std > 0) || !isfinite(std) || !isfinite(mean)) {
        torch_error(TORCH_ERR_INVALID_ARGUMENT, "%s: std must be positive and mean finite (got mean %g, std %g)",
                    fname, mean, std);
        return NULL;
    }
    if (!gen) gen = torch_default_generator();
    tensor *x = torch_empty(TORCH_SHAPE(n, 1, H, W));
    tensor *y = torch_empty_dtype(TORCH_INT64, 1, &n);
    data_dataset *ds = NULL;
    if (x && y) {
        float *px = tensor_data_f32(x);
        int64_t *py = tensor_data_i64(y);
        for (int64_t i = 0; i < n; i++) {
            int cls = (int)(i % DATA_SYNTHETIC_CLASSES);
            /* A fixed number of draws per image, so image i depends only on the seed and i. */
            double cx = 13.5 + (torch_generator_uniform(gen) * 2 - 1) * 4;
            double cy = 13.5 + (torch_generator_uniform(gen) * 2 - 1) * 4;
            double s = 5 + torch_generator_uniform(gen) * 4;      /* half-size 5..9 px */
            double width = 1.5 + torch_generator_uniform(gen) * 1.5; /* stroke 1.5..3 px */
            double bright = 0.6 + torch_generator_uniform(gen) * 0.4;
            double r = 1.5 + torch_generator_uniform(gen) * 1.5;  /* dot radius */
            float *img = px + i * H * W;
            for (int p = 0; p < H * W; p += 2) {
                double z[2];
                torch_generator_normal2(gen, &z[0], &z[1]);
                for (int k = 0; k < 2; k++) {
                    int yy = (p + k) / W, xx = (p + k) % W;
                    double d = shape_dist(cls, xx, yy, cx, cy, s, r);
                    double cover = width / 2 + 0.5 - d; /* antialiased stroke */
                    cover = cover < 0 ? 0 : cover > 1 ? 1 : cover;
                    double v = bright * cover + 0.08 * z[k];
                    v = v < 0 ? 0 : v > 1 ? 1 : v;
                    float q = (float)floor(v * 255 + 0.5); /* an 8-bit pixel, as in the IDX files */
                    img[p + k] = (q / 255.0f - mean) / std;
                }
            }
            py[i] = cls;
        }
        ds = data_dataset_new(x, y);
    }
    tensor_free(x);
    tensor_free(y);
    return ds;
}

