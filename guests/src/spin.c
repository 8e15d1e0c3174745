/* spin: prints "spinning" and loops forever (never writes the finisher);
 * for timeout tests.  No parameters. */
#include "guest.h"

int main(void) {
    puts("spinning\n");
    for (;;)
        __asm__ volatile("");
}
