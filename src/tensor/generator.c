/* generator.c — xoshiro256** (Blackman & Vigna) seeded by splitmix64; Box-Muller normals. */
#include "generator.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void torch_generator_manual_seed(torch_generator *g, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&x);
}

torch_generator torch_generator_new(uint64_t seed) {
    torch_generator g;
    torch_generator_manual_seed(&g, seed);
    return g;
}

uint64_t torch_generator_next(torch_generator *g) {
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double torch_generator_uniform(torch_generator *g) {
    return (double)(torch_generator_next(g) >> 11) * 0x1.0p-53;
}

uint64_t torch_generator_below(torch_generator *g, uint64_t n) {
    /* Reject the lowest (2^64 mod n) values so that every residue is equally likely. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = torch_generator_next(g);
        if (x >= threshold) return x % n;
    }
}

void torch_generator_normal2(torch_generator *g, double *z0, double *z1) {
    /* Box-Muller: u1 in (0, 1] so that log(u1) is finite. */
    double u1 = 1.0 - torch_generator_uniform(g);
    double u2 = torch_generator_uniform(g);
    double r = sqrt(-2.0 * log(u1));
    double theta = 2.0 * 3.14159265358979323846 * u2;
    *z0 = r * cos(theta);
    *z1 = r * sin(theta);
}

static _Thread_local torch_generator default_generator;
static _Thread_local int default_generator_seeded;

torch_generator *torch_default_generator(void) {
    if (!default_generator_seeded) {
        torch_generator_manual_seed(&default_generator, 0);
        default_generator_seeded = 1;
    }
    return &default_generator;
}

void torch_manual_seed(uint64_t seed) {
    torch_generator_manual_seed(&default_generator, seed);
    default_generator_seeded = 1;
}
