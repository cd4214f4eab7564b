/* Compiled with -Wall -Wextra -Wpedantic -Werror by targets linking ctorch (in-tree and
 * installed): ctorch's option macros override designated initialisers, and ctorch exports the
 * flag that keeps that warning-free in its users' builds. */
struct ctorch_override_init_check {
    int a, b;
};

int ctorch_override_init_value(void);

int ctorch_override_init_value(void) {
    struct ctorch_override_init_check s = ((struct ctorch_override_init_check){.a = 1, .b = 2, .a = 3});
    return s.a + s.b;
}
