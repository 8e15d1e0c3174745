/* hello: prints one line and exits 0. No parameters. */
#include "guest.h"

int main(void) {
    puts("Hello from vcpulab guest\n");
    return 0;
}
