// The same checks as abi_header.c, compiled as C++17.
#include "abi_header.c"
