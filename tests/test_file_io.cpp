// Reading and writing files (core/file_io.hpp), SHA-256 (core/sha256.hpp), run-folder
// locks and states (experiments/run_folder.hpp) and children without a shell
// (experiments/process.hpp).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/core/file_io.hpp"
#include "mtp/core/sha256.hpp"
#include "mtp/core/system_memory.hpp"
#include "mtp/experiments/process.hpp"
#include "mtp/experiments/run_folder.hpp"
#include "temp_dir.hpp"

namespace mtp {
namespace {

namespace fs = std::filesystem;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ------------------------------------------------------------------------ reading

TEST(ReadFile, RegularFilesAndPipesAreReadWhole) {
  test::TempDir dir;
  std::string big(3 << 20, 'x');  // more than one read chunk
  big[12345] = 'y';
  const fs::path file = dir.file("big.bin", big);
  const std::vector<std::uint8_t> bytes = read_file_bytes(file.string());
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), big);

  const fs::path fifo = dir.path() / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    for (size_t at = 0; at < big.size();)
      at += size_t(::write(fd, big.data() + at, big.size() - at));
    ::close(fd);
  });
  const std::vector<std::uint8_t> piped = read_file_bytes(fifo.string(), "--data");
  writer.join();
  EXPECT_EQ(piped.size(), big.size());
  EXPECT_EQ(piped[12345], 'y');
}

TEST(ReadFile, LimitsDevicesAndFoldersAreRefusedNamingTheFile) {
  test::TempDir dir;
  const fs::path file = dir.file("f.txt", std::string(1000, 'a'));
  EXPECT_NE(message_of([&] {
              read_file_bytes(file.string(), "--data", 999);
            }).find("--data " + file.string() + ": 1000 B is more than the 999 B"),
            std::string::npos);
  EXPECT_NO_THROW(read_file_bytes(file.string(), "--data", 1000));
  EXPECT_NE(message_of([] { read_file_bytes("/dev/zero", "--data"); }).find("character device"),
            std::string::npos);
  EXPECT_NE(message_of([&] { read_file_bytes(dir.path().string()); }).find("is a folder"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              read_file_bytes((dir.path() / "none").string(), "--x");
            }).find("--x " + (dir.path() / "none").string() + ": cannot open"),
            std::string::npos);
  EXPECT_NE(message_of([] { read_file_bytes("", "--data"); }).find("--data: the path is empty"),
            std::string::npos);

  // A pipe that goes on past the limit is cut off with the limit named (and its writer
  // then finds no reader: EPIPE, not a signal).
  ::signal(SIGPIPE, SIG_IGN);
  const fs::path fifo = dir.path() / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    const std::string chunk(1 << 16, 'z');
    for (int i = 0; i < 64; ++i)
      if (::write(fd, chunk.data(), chunk.size()) < 0) break;  // the reader gave up
    ::close(fd);
  });
  EXPECT_NE(message_of([&] {
              read_file_bytes(fifo.string(), "--data", 1 << 20);
            }).find("more than the 1.0 MiB mtp-exp reads from a pipe"),
            std::string::npos);
  writer.join();
}

TEST(SystemMemory, AvailableIsKnownHereAndSizesFormat) {
  EXPECT_GT(available_memory_bytes(), 1u << 20);
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(8.9 * 1024 * 1024 * 1024), "8.9 GiB");
}

// ------------------------------------------------------------------------ writing

TEST(WriteFile, ReplacesRegularFilesAndSyncsWithoutTemporaries) {
  test::TempDir dir;
  const fs::path p = dir.path() / "out.txt";
  write_file_atomic(p.string(), std::string_view("one"));
  write_file_atomic(p.string(), std::string_view("two"));
  EXPECT_EQ(test::read_file(p), "two");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"out.txt"});
}

TEST(WriteFile, LinksAndSpecialFilesAreRefusedUnlessAsked) {
  test::TempDir dir;
  const fs::path target = dir.file("target.txt", "keep");
  const fs::path link = dir.path() / "link.txt";
  fs::create_symlink(target, link);
  EXPECT_NE(message_of([&] {
              write_file_atomic(link.string(), std::string_view("x"));
            }).find("is a symbolic link"),
            std::string::npos);
  EXPECT_EQ(test::read_file(target), "keep");
  // Asked (a path the user named): through the link to its target, which is replaced.
  write_file_atomic(link.string(), std::string_view("new"), WriteOptions::user_named());
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(test::read_file(target), "new");
  // A chain of links is followed to its end; a dangling one is refused.
  const fs::path link2 = dir.path() / "link2.txt";
  fs::create_symlink(link, link2);
  write_file_atomic(link2.string(), std::string_view("chained"), WriteOptions::user_named());
  EXPECT_EQ(test::read_file(target), "chained");
  const fs::path dangling = dir.path() / "dangling";
  fs::create_symlink(dir.path() / "nowhere", dangling);
  EXPECT_NE(message_of([&] {
              write_file_atomic(dangling.string(), std::string_view("x"),
                                WriteOptions::user_named());
            }).find("does not exist"),
            std::string::npos);

  // A character device: refused, or written into (never replaced). Copies of /dev/null
  // and /dev/full in the test's folder, so that a regression cannot clobber the real.
  const fs::path null = test::device_node(dir.path(), "null", 3);
  const fs::path full = test::device_node(dir.path(), "full", 7);
  if (!null.empty() && !full.empty()) {
    EXPECT_NE(message_of([&] {
                write_file_atomic(null.string(), std::string_view("x"));
              }).find("is a character device"),
              std::string::npos);
    EXPECT_NO_THROW(
        write_file_atomic(null.string(), std::string_view("x"), WriteOptions::user_named()));
    EXPECT_NE(message_of([&] {
                write_file_atomic(full.string(), std::string_view("x"), WriteOptions::user_named());
              }).find(full.string() + ": write failed (No space left on device)"),
              std::string::npos);
    for (const fs::path& device : {null, full}) {
      struct stat st {};
      ASSERT_EQ(::stat(device.c_str(), &st), 0);
      EXPECT_TRUE(S_ISCHR(st.st_mode)) << device << " was replaced";
    }
  }
  EXPECT_NE(message_of([&] {
              write_file_atomic(dir.path().string(), std::string_view("x"));
            }).find("is a folder"),
            std::string::npos);
}

TEST(WriteFile, StaleTemporariesOfDeadWritersAreRemoved) {
  test::TempDir dir;
  // A writer that died: a child that exits at once leaves its pid free.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string mine = "out.txt.tmp." + std::string(host) + "." + std::to_string(dead);
  const std::string live = "out.txt.tmp." + std::string(host) + "." + std::to_string(::getppid());
  const std::string remote = "out.txt.tmp.elsewhere.example." + std::to_string(dead);
  for (const std::string& name : {mine, live, remote, std::string("other.txt.tmp.1")})
    dir.file(name, "partial");
  write_file_atomic((dir.path() / "out.txt").string(), std::string_view("done"));
  std::vector<std::string> kept = {"other.txt.tmp.1", "out.txt", live, remote};
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(dir.entries(), kept)
      << "a live writer's, another host's and another file's temporaries stay";
  // A folder's owner (who holds its lock) removes every one of the files it names.
  remove_stale_temporaries(dir.path().string(), {"out.txt"}, true);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"other.txt.tmp.1", "out.txt"}));
}

TEST(StagedFiles, NothingLandsUntilCommitAndNothingStaysAfterAFailure) {
  test::TempDir dir;
  const fs::path a = dir.file("a.txt", "old a"), b = dir.path() / "b.txt";
  {
    StagedFiles files;
    files.stage(a.string(), std::string_view("new a"));
    files.stage(b.string(), std::string_view("new b"));
    EXPECT_EQ(test::read_file(a), "old a");
    EXPECT_FALSE(fs::exists(b));
    // A failure before commit: the object dies, its temporaries with it.
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.txt"});
  StagedFiles files;
  files.stage(a.string(), std::string_view("new a"));
  const std::string reserved = files.reserve(b.string());
  write_file_atomic(reserved, std::string_view("from a child"));
  files.stage((dir.path() / "c.txt").string(), std::string_view("c"));
  files.drop((dir.path() / "c.txt").string());
  files.commit();
  EXPECT_EQ(test::read_file(a), "new a");
  EXPECT_EQ(test::read_file(b), "from a child");
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"a.txt", "b.txt"}));
  // Targets inside mtp's folders: a link there is refused at staging.
  fs::create_symlink(a, dir.path() / "l.txt");
  StagedFiles more;
  EXPECT_THROW(more.stage((dir.path() / "l.txt").string(), std::string_view("x")), Error);
}

// ------------------------------------------------------------------------ SHA-256

TEST(Sha256, MatchesTheFipsExamples) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // One million 'a', fed in uneven pieces: the buffering across updates is exact.
  Sha256 h;
  const std::string a(1001, 'a');
  for (int i = 0; i < 1000; ++i) h.update(a.data(), i % 2 ? 999 : 1001);
  EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// ------------------------------------------------------------------- run folders

TEST(FolderLock, OneHolderAtATimeAndTheHolderIsNamed) {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  {
    exp::FolderLock held = exp::FolderLock::take(run, "--out run");
    EXPECT_TRUE(fs::is_directory(run));
    // flock locks belong to an open file: a second open in this process conflicts too.
    EXPECT_FALSE(exp::FolderLock::try_take(run, "--out run").has_value());
    const std::string busy = message_of([&] { exp::FolderLock::take(run, "--out run"); });
    EXPECT_NE(busy.find("--out run: in use by another mtp-exp (pid " + std::to_string(::getpid())),
              std::string::npos)
        << busy;
    EXPECT_THROW(exp::FolderLock::take(run, "--out run"), exp::FolderBusy);
  }
  EXPECT_TRUE(exp::FolderLock::try_take(run, "--out run").has_value())
      << "released with its object";
  // A lock file that is a link is refused.
  const fs::path other = dir.path() / "other";
  fs::create_directories(other);
  fs::create_symlink(dir.path() / "elsewhere", other / ".lock");
  EXPECT_NE(
      message_of([&] { exp::FolderLock::take(other, "--out other"); }).find("is a symbolic link"),
      std::string::npos);
  const fs::path file = dir.file("plain", "x");
  EXPECT_NE(message_of([&] { exp::FolderLock::take(file, "--out plain"); }).find("is not a folder"),
            std::string::npos);
}

TEST(RunFolder, StatesFollowTheFilesAndANewRunNeedsOverwrite) {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  EXPECT_EQ(exp::inspect_run_folder(run).state, exp::RunState::empty);
  fs::create_directories(run);
  dir.file("run/config.json", R"({"config": {"steps": 4, "out": "a", "threads": 1}})");
  EXPECT_EQ(exp::inspect_run_folder(run).state, exp::RunState::unfinished);
  // A result of the same settings (the folder and threads may differ): done.
  dir.file("run/result.json", R"({"config": {"steps": 4, "out": "b", "threads": 2}})");
  EXPECT_EQ(exp::inspect_run_folder(run).state, exp::RunState::finished);
  // Of other settings: not done.
  dir.file("run/result.json", R"({"config": {"steps": 5, "out": "a", "threads": 1}})");
  exp::RunFolderStatus s = exp::inspect_run_folder(run);
  EXPECT_EQ(s.state, exp::RunState::unfinished);
  EXPECT_NE(s.detail.find("another configuration"), std::string::npos) << s.detail;
  dir.file("run/failed.json", R"({"error": "step 3: the loss is nan; stopping"})");
  s = exp::inspect_run_folder(run);
  EXPECT_EQ(s.state, exp::RunState::failed);
  EXPECT_EQ(s.detail, "step 3: the loss is nan; stopping");
  // Unreadable files make it unfinished with the reason, never an exception.
  fs::remove(run / "failed.json");
  dir.file("run/config.json", "{not json");
  s = exp::inspect_run_folder(run);
  EXPECT_NE(s.detail.find("not valid JSON"), std::string::npos) << s.detail;

  EXPECT_THROW(exp::prepare_new_run(run, "--out run", false), UsageError);
  EXPECT_TRUE(fs::exists(run / "config.json"));
  dir.file("run/notes.txt", "the user's own");
  exp::prepare_new_run(run, "--out run", true);
  EXPECT_EQ(exp::inspect_run_folder(run).state, exp::RunState::empty);
  EXPECT_TRUE(fs::exists(run / "notes.txt")) << "only the run's own files are removed";
}

// ------------------------------------------------------------------------ processes

TEST(Process, ArgumentsReachTheChildAsTheyAre) {
  test::TempDir dir;
  const std::string hostile = "x';touch PWNED;' $(touch PWNED2) `touch PWNED3`";
  exp::ProcessOptions o;
  o.cwd = dir.path().string();
  o.output_file = (dir.path() / "out.txt").string();
  EXPECT_EQ(exp::run_process("printf", {"printf", "%s", hostile}, o), 0);
  EXPECT_EQ(test::read_file(dir.path() / "out.txt"), hostile);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"out.txt"});
  EXPECT_EQ(exp::run_process("sh", {"sh", "-c", "exit 7"}), 7);
  EXPECT_NE(message_of([] { exp::run_process("no-such-program-mtp", {"x"}); }).find("cannot run"),
            std::string::npos);
}

}  // namespace
}  // namespace mtp
