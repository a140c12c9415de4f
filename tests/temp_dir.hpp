// A fresh folder under the system temp dir, removed with its contents at scope exit.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace mtp::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mtp-test-XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Writes `contents` to a file of that name in the folder and returns its path.
  std::filesystem::path file(const std::string& name, const std::string& contents) const {
    const std::filesystem::path p = path_ / name;
    std::ofstream out(p, std::ios::binary);
    out << contents;
    return p;
  }
  // The names in the folder, sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::filesystem::path path_;
};

// A character device node `name` in `dir` that is the kernel's /dev/null (1,3) or
// /dev/full (1,7), for tests that write to devices: a regression that replaced the
// device with a file replaces this copy, not the machine's. Empty when this process
// may not create device nodes (not root).
inline std::filesystem::path device_node(const std::filesystem::path& dir, const char* name,
                                         unsigned minor) {
  const std::filesystem::path p = dir / name;
  if (::mknod(p.c_str(), S_IFCHR | 0666, makedev(1, minor)) != 0) return {};
  return p;
}

// The whole content of a file ("" when it cannot be read).
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace mtp::test
