// Shared plumbing of the qforge command line: one file per subcommand (cmd_*.cpp) implements
// `int cmd_NAME(int argc, char** argv)`; main.cpp dispatches. Conventions for every subcommand:
// - `--help` prints usage; `--json` makes the command print exactly one JSON object as the LAST line of
//   standard output (human-readable output goes to standard error then).
// - exit codes: 0 success, 2 bad usage or bad input (qforge::InputError, option errors), 1 other failure.
// - files are written atomically (temp + rename) by the libraries; a failure leaves no half-written file.
#pragma once

#include "engine/error.hpp"

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace qforge::apps {

using Json = nlohmann::json;

// Bad command-line usage (unknown option, missing required option, invalid value): exit code 2.
class UsageError : public InputError {
public:
  using InputError::InputError;
};

// Parses argv with `opts`; prints help and returns true when --help was given. Unknown options and
// malformed values throw UsageError naming the option.
bool parse_or_help(cxxopts::Options& opts, int argc, char** argv, cxxopts::ParseResult& out);

// The required option's value, or UsageError "--NAME is required".
std::string required(const cxxopts::ParseResult& r, const std::string& name);

// Prints the JSON result object as the last line of stdout.
void emit_json(const Json& j);

// The command's result: with --json one JSON line (the last of stdout), else indented JSON.
void print_result(const cxxopts::ParseResult& r, const Json& summary);

// UsageError unless `dir` holds a quantized model (encodings.json + quantsim.json).
void require_quantized_dir(const std::string& option, const std::filesystem::path& dir);

// Human-readable message to stderr (every command's normal output when --json is on).
void say(const std::string& s);

int cmd_models(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_demo(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_finetune(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_compare(int argc, char** argv);
int cmd_analyze(int argc, char** argv);
int cmd_import(int argc, char** argv);
int cmd_run(int argc, char** argv);

}  // namespace qforge::apps
