// Publishing outputs: the one mechanism every qforge command uses to write its output directory.
//
//   OutputDir out(path, "quantized", {.force = force, .inputs = {model_dir}});  // checks + lock
//   write everything into out.staging() ...
//   out.publish();                       // one rename; nothing is visible at `path` before this
//
// Note [Publishing outputs]
// - The output is built in a private temporary sibling `<out>.qforge-tmp-<pid>-<rand>` and published
//   with one rename (an atomic exchange when an old output is replaced), so a reader sees either the old
//   complete output or the new complete one, never a mix; a failure removes only that temporary.
// - A marker file `.qforge-output` ({"format": "qforge-output", "kind": KIND}) identifies a directory
//   qforge wrote. An existing --out is accepted only when it is an empty directory, or a qforge output of
//   the same kind AND --force was given (then it is replaced; the old copy is deleted after the marker is
//   checked again). Anything else (a user directory, a file, a symbolic link, another kind) is refused
//   with InputError (exit 2); nothing outside the output is ever deleted.
// - The output never overlaps an input: --out may not equal, contain or lie inside an input path, nor be
//   (or contain) the working directory.
// - Writers of one --out are serialised by an exclusive lock on `<out>.qforge-lock` (flock, taken
//   without waiting): a second concurrent writer is refused with InputError; the lock file is removed
//   when the lock is released.
// - Runs that write progressively (train, finetune: checkpoints, so a run killed at any moment can be
//   resumed) are published at their start (`publish()` right away; the old output, if --force, replaced
//   as a whole) and then updated in place under the lock, every file written to a temporary name and
//   renamed; the checkpoint's state.json is its commit point and weights.safetensors is written last.
// A process killed outright (SIGKILL, power loss) may leave its `<out>.qforge-tmp-<pid>-<hex>` behind
// (never a half-replaced --out); the next writer of that --out removes it under the lock once that pid
// no longer exists. A stale lock file is harmless: flock dies with its process.
// Single files given by the user (eval --save-logits): check_single_file_target() refuses symbolic
// links and special files (exit 2); a regular file is replaced by temp + rename.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace qforge::train {

inline constexpr const char* kOutputMarker = ".qforge-output";

struct OutputOptions {
  bool force = false;                         // replace a previous qforge output of the same kind
  std::vector<std::filesystem::path> inputs;  // paths the command reads: the output may not overlap them
  bool allow_existing_same_kind = false;      // accept an existing output of this kind without --force
                                              // (resuming a run in place); publish() then keeps it
  OutputOptions(bool force_ = false, std::vector<std::filesystem::path> inputs_ = {}, bool allow_existing = false)
      : force(force_), inputs(std::move(inputs_)), allow_existing_same_kind(allow_existing) {}
};

// The kind recorded in `dir`'s marker, or "" when `dir` is not a qforge output.
std::string output_kind(const std::filesystem::path& dir);

// Writes the marker of `kind` into `dir` (atomically).
void write_output_marker(const std::filesystem::path& dir, const std::string& kind);

class OutputDir {
public:
  // Validates `out` against the rules above, takes the lock, creates the temporary sibling.
  OutputDir(std::filesystem::path out, std::string kind, OutputOptions options = {});
  ~OutputDir();  // removes the temporary if not published; releases the lock
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  // Where to write before publish(); the final path after it.
  const std::filesystem::path& staging() const { return published_ ? out_ : tmp_; }
  const std::filesystem::path& path() const { return out_; }
  // True when `out` already held an output of this kind that is kept (allow_existing_same_kind).
  bool existing() const { return keep_existing_; }

  // Writes the marker and moves the staging directory to `out` (one rename / exchange); removes the old
  // output when one was replaced. Idempotent.
  void publish();

private:
  void check_target() const;
  std::filesystem::path out_, tmp_;
  std::string kind_;
  OutputOptions opt_;
  int lock_fd_ = -1;
  std::filesystem::path lock_path_;
  bool published_ = false;
  bool keep_existing_ = false;
};

// InputError unless `path` is a valid single-file output: absent, or an existing regular file that is not
// a symbolic link (symbolic links and special files are refused rather than replaced); its directory
// must exist. `option` names the command-line option in the message.
void check_single_file_target(const std::string& option, const std::filesystem::path& path);

// InputError when `a` and `b` are the same path or one lies inside the other.
void check_no_overlap(const std::string& what_a, const std::filesystem::path& a, const std::string& what_b,
                      const std::filesystem::path& b);

}  // namespace qforge::train
