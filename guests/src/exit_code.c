/* exit_code: prints a line, then stops through the finisher with
 * 0x3333 | (3 << 16), i.e. exit status 3.  No parameters. */
#include "guest.h"

int main(void) {
    puts("exiting with code 3\n");
    exit_code(3);
}
