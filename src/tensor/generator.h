/* generator.h — seeded random numbers, the same on every run, machine and thread count.
 *
 * Ownership: a torch_generator is a plain value (no heap memory): put it on the stack or in a
 * struct, copy it to snapshot its state, write it back to restore (checkpoints do exactly this).
 *
 * Algorithm: xoshiro256** seeded through splitmix64, normals by Box-Muller in double. The
 * stream is ctorch's own: it does not reproduce PyTorch's mt19937 numbers, only their
 * distributions. Generation is sequential, so thread count never changes the numbers.
 */
#ifndef CTORCH_GENERATOR_H
#define CTORCH_GENERATOR_H

#include <stdint.h>

typedef struct torch_generator {
    uint64_t s[4];
} torch_generator;

/* A generator seeded with `seed` (torch_generator(), then $manual_seed(seed)). */
torch_generator torch_generator_new(uint64_t seed);
/* Reseeds g in place. */
void     torch_generator_manual_seed(torch_generator *g, uint64_t seed);
/* Next 64 random bits. */
uint64_t torch_generator_next(torch_generator *g);
/* Uniform double in [0, 1) with 53 random bits. */
double   torch_generator_uniform(torch_generator *g);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t torch_generator_below(torch_generator *g, uint64_t n);
/* Two independent N(0, 1) values. */
void     torch_generator_normal2(torch_generator *g, double *z0, double *z1);

/* This thread's default generator, used where an API takes NULL for its generator.
 * Seeded with 0 until torch_manual_seed() is called on this thread. Borrowed. */
torch_generator *torch_default_generator(void);
/* Reseeds this thread's default generator (R torch's torch_manual_seed). */
void torch_manual_seed(uint64_t seed);

#endif /* CTORCH_GENERATOR_H */
