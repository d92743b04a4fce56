// Subcommands whose libraries have not landed yet. Each is replaced by its own cmd_*.cpp.
#include "apps/cli.hpp"

namespace qforge::apps {

namespace {
int pending(const char* name) {
  throw Error(fmt::format("qforge {} is not available in this build yet", name));
}
}  // namespace

int cmd_analyze(int, char**) { return pending("analyze"); }

}  // namespace qforge::apps
