#include "train/output.hpp"

#include "engine/error.hpp"
#include "engine/file_io.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <random>
#include <csignal>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qforge::train {

namespace fs = std::filesystem;

namespace {

std::string random_suffix() {
  std::random_device rd;
  return fmt::format("{}-{:08x}", ::getpid(), rd());
}

// Absolute, normalised, without a trailing separator; the last component is kept as given (a symbolic
// link there is detected, not followed).
fs::path normalize_out(const fs::path& p) {
  if (p.empty()) throw InputError("output path is empty");
  fs::path a = fs::absolute(p).lexically_normal();
  if (a.filename().empty()) a = a.parent_path();
  if (a == a.root_path() || a.filename() == "..")
    throw InputError(fmt::format("{}: not usable as an output directory", p.string()));
  std::error_code ec;
  fs::path parent = fs::weakly_canonical(a.parent_path(), ec);
  if (ec) parent = a.parent_path();
  return parent / a.filename();
}

bool inside(const fs::path& child, const fs::path& parent) {  // both canonical
  auto c = child.begin();
  for (auto p = parent.begin(); p != parent.end(); ++p, ++c) {
    if (p->empty() && std::next(p) == parent.end()) break;  // trailing separator
    if (c == child.end() || *c != *p) return false;
  }
  return true;
}

// Under the lock no other qforge process writes this --out: temporaries `<name>.qforge-tmp-<pid>-<hex>`
// left by a process that no longer exists (killed outright) are removed. Only exact matches of the
// pattern whose pid is gone are touched.
void remove_stale_temporaries(const fs::path& out) {
  const std::string prefix = out.filename().string() + ".qforge-tmp-";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const auto dash = rest.find('-');
    if (dash == std::string::npos || dash == 0 || dash + 9 != rest.size()) continue;
    const std::string pid_s = rest.substr(0, dash), hex = rest.substr(dash + 1);
    if (pid_s.find_first_not_of("0123456789") != std::string::npos || pid_s.size() > 9) continue;
    if (hex.find_first_not_of("0123456789abcdef") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_s));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code ec2;
    if (!fs::is_directory(fs::symlink_status(e.path(), ec2))) continue;
    fs::remove_all(e.path(), ec2);
  }
}

}  // namespace

std::string output_kind(const fs::path& dir) {
  const fs::path m = dir / kOutputMarker;
  std::error_code ec;
  const auto st = fs::symlink_status(m, ec);
  if (ec || !fs::is_regular_file(st)) return "";
  if (fs::file_size(m, ec) > 4096 || ec) return "";
  try {
    std::ifstream in(m);
    const auto j = nlohmann::json::parse(in);
    if (!j.is_object() || j.value("format", "") != "qforge-output") return "";
    const auto k = j.value("kind", "");
    return k;
  } catch (...) {
    return "";
  }
}

void write_output_marker(const fs::path& dir, const std::string& kind) {
  const nlohmann::json j = {{"format", "qforge-output"}, {"version", 1}, {"kind", kind}};
  write_file_atomic(dir / kOutputMarker, j.dump() + "\n");
}

void check_no_overlap(const std::string& what_a, const fs::path& a, const std::string& what_b, const fs::path& b) {
  std::error_code ec1, ec2;
  const fs::path ca = fs::weakly_canonical(fs::absolute(a), ec1), cb = fs::weakly_canonical(fs::absolute(b), ec2);
  if (ec1 || ec2) return;
  if (inside(ca, cb) || inside(cb, ca))
    throw InputError(fmt::format("{} {} and {} {} overlap (the output may not be, contain or lie inside an input)",
                                 what_a, a.string(), what_b, b.string()));
}

void check_single_file_target(const std::string& option, const fs::path& path) {
  if (path.empty() || path.filename().empty() || path.filename() == "." || path.filename() == "..")
    throw InputError(fmt::format("{} '{}': not a file name", option, path.string()));
  std::error_code ec;
  const auto st = fs::symlink_status(path, ec);
  if (fs::is_symlink(st))
    throw InputError(fmt::format("{} {}: is a symbolic link; qforge does not replace links (give the target's path)",
                                 option, path.string()));
  if (fs::exists(st) && !fs::is_regular_file(st))
    throw InputError(fmt::format("{} {}: exists and is not a regular file", option, path.string()));
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec))
    throw InputError(fmt::format("{} {}: directory {} does not exist", option, path.string(), dir.string()));
}

OutputDir::OutputDir(fs::path out, std::string kind, OutputOptions options)
    : kind_(std::move(kind)), opt_(std::move(options)) {
  out_ = normalize_out(out);
  for (const auto& in : opt_.inputs) check_no_overlap("--out", out_, "input", in);
  // Publishing renames over --out: never the working directory or one that contains it.
  std::error_code cwd_ec;
  const fs::path cwd = fs::current_path(cwd_ec);
  if (!cwd_ec && inside(fs::weakly_canonical(cwd, cwd_ec), fs::weakly_canonical(out_, cwd_ec)))
    throw InputError(fmt::format("--out {}: is the working directory or contains it; choose another directory",
                                 out.string()));
  const fs::path parent = out_.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw InputError(fmt::format("--out {}: cannot create {}: {}", out_.string(), parent.string(), ec.message()));
  check_target();  // fail fast, before the lock

  lock_path_ = parent / (out_.filename().string() + ".qforge-lock");
  for (int attempt = 0;; ++attempt) {
    const int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
      throw InputError(fmt::format("--out {}: cannot create the lock file {}: {}", out_.string(), lock_path_.string(),
                                   std::strerror(errno)));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      throw InputError(fmt::format("--out {}: another qforge command is writing it (lock {} is held); try again when it "
                                   "has finished",
                                   out_.string(), lock_path_.string()));
    }
    // The holder before us may have removed the file after we opened it: lock the file at the path.
    struct stat a {}, b {};
    if (::fstat(fd, &a) == 0 && ::lstat(lock_path_.c_str(), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
      lock_fd_ = fd;
      break;
    }
    ::close(fd);
    if (attempt > 100) throw Error(fmt::format("--out {}: cannot take the lock {}", out_.string(), lock_path_.string()));
  }
  try {
    check_target();  // again, under the lock
    remove_stale_temporaries(out_);
    if (keep_existing_) {
      published_ = true;  // updated in place (resume)
      return;
    }
    for (int attempt = 0;; ++attempt) {
      tmp_ = parent / (out_.filename().string() + ".qforge-tmp-" + random_suffix());
      if (fs::create_directory(tmp_, ec)) break;
      if (attempt > 100 || (ec && ec != std::errc::file_exists))
        throw Error(fmt::format("--out {}: cannot create a temporary directory next to it: {}", out_.string(),
                                ec.message()));
    }
  } catch (...) {
    tmp_.clear();
    ::unlink(lock_path_.c_str());
    ::close(lock_fd_);
    lock_fd_ = -1;
    throw;
  }
}

OutputDir::~OutputDir() {
  std::error_code ec;
  if (!published_ && !tmp_.empty()) fs::remove_all(tmp_, ec);  // only the temporary this object created
  if (lock_fd_ >= 0) {
    struct stat a {}, b {};
    if (::fstat(lock_fd_, &a) == 0 && ::lstat(lock_path_.c_str(), &b) == 0 && a.st_ino == b.st_ino)
      ::unlink(lock_path_.c_str());
    ::close(lock_fd_);
  }
}

void OutputDir::check_target() const {
  std::error_code ec;
  const auto st = fs::symlink_status(out_, ec);
  if (!fs::exists(st)) return;
  const std::string o = out_.string();
  if (fs::is_symlink(st))
    throw InputError(fmt::format("--out {}: is a symbolic link; qforge does not replace links (give the real path)", o));
  if (!fs::is_directory(st)) throw InputError(fmt::format("--out {}: exists and is not a directory", o));
  if (fs::is_empty(out_, ec) && !ec) return;
  const std::string have = output_kind(out_);
  if (have.empty())
    throw InputError(fmt::format("--out {}: exists and is not a qforge output (no {} marker); refusing to replace it: "
                                 "choose another directory, or remove it yourself if it is an old qforge output",
                                 o, kOutputMarker));
  if (have != kind_)
    throw InputError(fmt::format("--out {}: holds a qforge {} output, not a {} output; choose another directory", o,
                                 have, kind_));
  if (opt_.allow_existing_same_kind) {
    const_cast<OutputDir*>(this)->keep_existing_ = true;
    return;
  }
  if (!opt_.force)
    throw InputError(fmt::format("--out {}: already holds a qforge {} output; pass --force to replace it", o, kind_));
}

void OutputDir::publish() {
  if (published_) return;
  write_output_marker(tmp_, kind_);
  check_target();
  std::error_code ec;
  const auto st = fs::symlink_status(out_, ec);
  const bool replace = fs::exists(st) && !fs::is_empty(out_, ec);
  if (!replace) {
    if (::rename(tmp_.c_str(), out_.c_str()) != 0)
      throw InputError(fmt::format("--out {}: cannot publish the output: {} (did something else create it?)",
                                   out_.string(), std::strerror(errno)));
    published_ = true;
    return;
  }
  // Replace a verified previous qforge output of this kind: one atomic exchange, then delete the old
  // copy (now at tmp_) after checking its marker again.
  if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, out_.c_str(), RENAME_EXCHANGE) != 0) {
    if (errno != EINVAL && errno != ENOSYS)
      throw Error(fmt::format("--out {}: cannot publish the output: {}", out_.string(), std::strerror(errno)));
    // No exchange on this file system: move the old one aside, then the new one in.
    const fs::path aside = out_.parent_path() / (out_.filename().string() + ".qforge-old-" + random_suffix());
    if (::rename(out_.c_str(), aside.c_str()) != 0)
      throw Error(fmt::format("--out {}: cannot move the old output aside: {}", out_.string(), std::strerror(errno)));
    if (::rename(tmp_.c_str(), out_.c_str()) != 0) {
      const int err = errno;
      (void)::rename(aside.c_str(), out_.c_str());
      throw Error(fmt::format("--out {}: cannot publish the output: {}", out_.string(), std::strerror(err)));
    }
    tmp_ = aside;
  }
  published_ = true;
  if (output_kind(tmp_) == kind_) {
    fs::remove_all(tmp_, ec);
  } else {
    std::fprintf(stderr, "qforge: kept the replaced output at %s (it no longer carries a qforge marker)\n",
                 tmp_.c_str());
  }
}

}  // namespace qforge::train
