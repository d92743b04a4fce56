// qforge command line (placeholder until the CLI lands).
#include <cstdio>
int main() {
  std::puts("qforge");
  return 0;
}
