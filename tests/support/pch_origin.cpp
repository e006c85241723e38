// The target that compiles the test programs' precompiled header (tests/CMakeLists.txt,
// mqsec_test_pch); every test program reuses it. Nothing runs it.
int main() { return 0; }
