// The mtp-exp command line, for every cell and aggregator in the registry (built-in and
// registered by the program before run_main): train and evaluate recurrent models with K
// temporal perspectives.
//
//   mtp-exp [train] [flags]              train one configuration (the default command)
//   mtp-exp eval --checkpoint FILE       re-evaluate a saved model
//   mtp-exp layer --params P --input X --output Y [flags]   run one wrapped layer
//
// Exit status: 0 on success, 2 on a usage error (bad flag or value), 3 when the folder
// is in use by another mtp-exp (its lock is held), 1 on any other failure (unreadable
// file, malformed data, numerical failure, memory, a write error, stdout included).
// Errors are one line.
#include <fmt/format.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "mtp/core/error.hpp"
#include "mtp/core/file_io.hpp"
#include "mtp/experiments/app.hpp"
#include "mtp/experiments/benchmarks.hpp"
#include "mtp/experiments/cli.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/generate.hpp"
#include "mtp/experiments/json_file.hpp"
#include "mtp/experiments/layer_command.hpp"
#include "mtp/experiments/process.hpp"
#include "mtp/experiments/registry.hpp"
#include "mtp/experiments/report.hpp"
#include "mtp/experiments/run_folder.hpp"
#include "mtp/experiments/sweep.hpp"
#include "mtp/experiments/tokenizer.hpp"
#include "mtp/experiments/trainer.hpp"
#include "mtp/version.hpp"

namespace po = boost::program_options;
namespace cli = mtp::exp::cli;
using mtp::exp::TrainConfig;

namespace {

constexpr const char* kUsage =
    "usage: mtp-exp [train] [flags]                 train and evaluate one configuration\n"
    "       mtp-exp eval --checkpoint FILE [flags]  re-evaluate a saved model\n"
    "       mtp-exp layer --params P --input X --output Y [flags]\n"
    "                                               run one wrapped layer (forward, backward)\n"
    "       mtp-exp generate --checkpoint FILE --prompt TEXT [--tokens N]\n"
    "                                               stream text from a text model\n"
    "       mtp-exp sweep --grid \"flag=a,b;...\" [train flags] --out DIR [--jobs N]\n"
    "                                               a grid of runs, resumable, shardable\n"
    "       mtp-exp report DIR                      tables, statistics and plots of a sweep\n"
    "       mtp-exp check [--cell C] [--aggregator A]\n"
    "                                               the generated gradient and path checks\n"
    "       mtp-exp tokenize [--tokenizer FILE] --input FILE [--decode | --strings]\n"
    "                                               text to token ids (JSON) and back\n"
    "       mtp-exp COMMAND --help                  the flags of a command\n"
    "       mtp-exp --version                       the version\n";

// "mtp-exp <command> <args...>" as a shell would need it, to be recorded and rerun.
std::string command_line(const char* command, int argc, const char* const* argv) {
  std::string line = fmt::format("mtp-exp {}", command);
  for (int i = 1; i < argc; ++i) {
    line += ' ';
    line += mtp::exp::shell_word(argv[i]);
  }
  return line;
}

int cmd_train(int argc, const char* const* argv) {
  mtp::exp::cli::TrainFlags flags;
  if (!flags.parse(argc, argv, kUsage)) return 0;
  if (!flags.resume().empty())
    mtp::exp::resume_training(flags.resume(), flags.config().threads);
  else
    mtp::exp::run_training(flags.config(), flags.overwrite());
  return 0;
}

int cmd_eval(int argc, const char* const* argv) {
  std::string checkpoint, data, logits, tokenizer;
  int threads = 0;
  bool json = false;
  mtp::exp::BenchmarkArgs bench;
  po::options_description d("eval flags");
  d.add_options()("help,h", "show this help")  //
      ("checkpoint", po::value(&checkpoint)->required(),
       "model.safetensors written by training")  //
      ("data", po::value(&data),
       "text checkpoints: evaluate on this file's last 10%; with --benchmark: its data file")  //
      ("tokenizer", po::value(&tokenizer),
       "text checkpoints: this tokenizer.json in place of the one the model was trained with")  //
      ("benchmark", po::value(&bench.benchmark),
       ("zero-shot benchmark (text checkpoints): " + mtp::exp::benchmark_names()).c_str())  //
      ("examples", po::value(&bench.examples_out),
       "--benchmark: also write each example's log-likelihoods and predictions to this file "
       "(JSON lines)")  //
      ("prefix-token", po::value(&bench.prefix_token),
       "--benchmark: put this token id before every context (RWKV-LM's eval scripts: 0, "
       "<|endoftext|>, in RWKV-4's time; 187, \"\\n\", later; default: none, as lm-eval)")  //
      ("labels", po::value(&bench.labels),
       "piqa: the labels file (default: --data with .jsonl replaced by _labels.lst)")   //
      ("limit", po::value(&bench.limit), "--benchmark: evaluate the first N examples")  //
      ("logits", po::value(&logits),
       "also write the first validation batch's tokens (T,B) and logits (T,B,V) to this "
       "safetensors file")                                                          //
      ("threads", po::value(&threads)->default_value(0), "threads (0: all cores)")  //
      ("json", po::bool_switch(&json), "print the result as JSON");
  po::variables_map vm;
  if (!cli::parse(argc, argv, d, vm, "usage: mtp-exp eval --checkpoint FILE [flags]")) return 0;
  if (vm.count("benchmark")) {
    if (vm.count("logits"))
      mtp::usage_fail("--logits applies to the validation set, not --benchmark");
    if (vm.count("prefix-token") && bench.prefix_token < 0)
      mtp::usage_fail("--prefix-token must be a token id >= 0, got {}", bench.prefix_token);
    if (vm.count("limit") && bench.limit < 1)
      mtp::usage_fail("--limit must be >= 1, got {}", bench.limit);
    bench.checkpoint = checkpoint;
    bench.data = data;
    bench.tokenizer = tokenizer;
    bench.threads = threads;
    const nlohmann::json r = mtp::exp::run_benchmark(bench);
    fmt::print("{}\n", json ? r.dump(2) : mtp::exp::benchmark_summary(r));
    return 0;
  }
  if (vm.count("labels") || vm.count("limit") || vm.count("prefix-token") || vm.count("examples"))
    mtp::usage_fail("--labels, --limit, --prefix-token and --examples apply to --benchmark only");
  const nlohmann::json r = mtp::exp::run_evaluation(checkpoint, data, tokenizer, threads, logits);
  if (json) {
    fmt::print("{}\n", r.dump(2));
  } else if (r.contains("bits_per_byte")) {
    if (r.contains("bits_per_token"))
      fmt::print("{}: loss {:.4f}  bits/byte {:.4f}  bits/token {:.4f}  ({} tokens)\n", checkpoint,
                 r["loss"].get<double>(), r["bits_per_byte"].get<double>(),
                 r["bits_per_token"].get<double>(), r["labelled"].get<long long>());
    else
      fmt::print("{}: loss {:.4f}  bits/byte {:.4f}  ({} bytes)\n", checkpoint,
                 r["loss"].get<double>(), r["bits_per_byte"].get<double>(),
                 r["labelled"].get<long long>());
  } else {
    fmt::print("{}: loss {:.4f}  accuracy {:.4f}  ({} queries)\n", checkpoint,
               r["loss"].get<double>(), r["accuracy"].get<double>(),
               r["labelled"].get<long long>());
    if (r.contains("groups"))
      for (const auto& g : r["groups"])
        fmt::print("  {:<10} accuracy {:.4f}  ({} queries)\n", g["name"].get<std::string>(),
                   g["accuracy"].get<double>(), g["labelled"].get<long long>());
  }
  return 0;
}

int cmd_generate(int argc, const char* const* argv) {
  mtp::exp::GenerateArgs a;
  long long seed = 0;
  bool stats = false;
  po::options_description d("generate flags");
  d.add_options()("help,h", "show this help")                                           //
      ("checkpoint", po::value(&a.checkpoint)->required(), "a text model.safetensors")  //
      ("prompt", po::value(&a.prompt)->required(), "the text to continue")              //
      ("tokenizer", po::value(&a.tokenizer),
       "this tokenizer.json in place of the one the model was trained with")           //
      ("tokens", po::value(&a.tokens)->default_value(a.tokens), "tokens to generate")  //
      ("temperature", po::value(&a.temperature)->default_value(a.temperature, "1"),
       "sampling temperature (0: greedy)")                                            //
      ("seed", po::value(&seed)->default_value(0), "seed of the sampling")            //
      ("threads", po::value(&a.threads)->default_value(0), "threads (0: all cores)")  //
      ("stats", po::bool_switch(&stats), "print timing per token to stderr at the end");
  po::variables_map vm;
  if (!cli::parse(argc, argv, d, vm,
                  "usage: mtp-exp generate --checkpoint FILE --prompt TEXT [--tokens N] "
                  "[--temperature T]\nStreams one token at a time through the recurrent state."))
    return 0;
  if (seed < 0) mtp::usage_fail("--seed must be >= 0, got {}", seed);
  a.seed = std::uint64_t(seed);
  const mtp::exp::GenerateStats st = mtp::exp::run_generation(a, stdout);
  std::fputc('\n', stdout);
  if (stats)
    fmt::print(stderr,
               "prompt {} tokens in {:.3f} s; generated {} tokens in {:.3f} s ({:.3f} ms/token)\n",
               st.prompt_tokens, st.prompt_seconds, st.generated, st.generate_seconds,
               st.generated ? 1e3 * st.generate_seconds / double(st.generated) : 0.0);
  return 0;
}

int cmd_sweep(int argc, const char* const* argv) {
  mtp::exp::SweepOptions o;
  std::string shard = "0/1";
  po::options_description d("sweep flags (every other flag is a train flag shared by all runs)");
  d.add_options()("help,h", "show this help")  //
      ("grid", po::value(&o.grid)->required(),
       "the axes: \"flag=v1,v2;flag=v1,...\" over train flags (cell, perspectives, aggregator, "
       "noise, seed, ...)")                                                                    //
      ("out", po::value(&o.out)->required(), "sweep folder: DIR/runs/<run>/, DIR/sweep.json")  //
      ("jobs", po::value(&o.jobs)->default_value(1), "runs at a time (child processes)")       //
      ("threads", po::value(&o.threads)->default_value(0),
       "threads per run (0: cores / jobs; in a Slurm script, --slurm-cpus)")  //
      ("shard", po::value(&shard)->default_value("0/1"),
       "run only slice i of n (runs with index = i mod n), e.g. a Slurm array task")  //
      ("emit-slurm", po::value(&o.emit_slurm),
       "write an sbatch array script (task i runs shard i) instead of running")  //
      ("slurm-tasks", po::value(&o.slurm_tasks)->default_value(0),
       "array size (0: one per run)")  //
      ("slurm-cpus", po::value(&o.slurm_cpus)->default_value(2), "cpus per array task");
  po::variables_map vm;
  const po::parsed_options parsed =
      po::command_line_parser(argc, argv).options(d).allow_unregistered().run();
  po::store(parsed, vm);
  if (vm.count("help")) {
    std::cout << "usage: mtp-exp sweep --grid \"cell=gru,lstm;perspectives=1,3;seed=0,1\" "
                 "[train flags] --out DIR [--jobs N]\n"
                 "Finished runs (DIR/runs/<run>/result.json) are skipped: rerun to resume.\n"
                 "A shared flag may name grid axes in braces, filled per run: --init-from\n"
                 "\"base/runs/cell-{cell}_seed-{seed}/model.safetensors\" (docs/cli.md).\n\n"
              << d << "\n";
    return 0;
  }
  cli::reject_empty_values(vm);
  po::notify(vm);
  o.base_args = po::collect_unrecognized(parsed.options, po::include_positional);
  const size_t slash = shard.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument(shard);
    size_t used = 0;
    o.shard = std::stoi(shard.substr(0, slash), &used);
    if (used != slash) throw std::invalid_argument(shard);
    o.shards = std::stoi(shard.substr(slash + 1), &used);
    if (used != shard.size() - slash - 1) throw std::invalid_argument(shard);
  } catch (const std::exception&) {
    mtp::usage_fail("--shard '{}' is not i/n", shard);
  }
  o.command_line = command_line("sweep", argc, argv);
  return mtp::exp::run_sweep(o);
}

// The layer checks of every registered pair (or the chosen ones): a table of the worst
// error per check group, every failure by name; exit 1 when any fails.
int cmd_check(int argc, const char* const* argv) {
  std::string cell, aggregator;
  bool verbose = false;
  po::options_description d("check flags");
  d.add_options()("help,h", "show this help")                                              //
      ("cell", po::value(&cell), "only this cell (default: every registered cell)")        //
      ("aggregator", po::value(&aggregator), "only this aggregator (default: every one)")  //
      ("verbose", po::bool_switch(&verbose), "every check, not only the worst per pair");
  po::variables_map vm;
  if (!cli::parse(argc, argv, d, vm,
                  "usage: mtp-exp check [--cell C] [--aggregator A]\nGradient checks (central "
                  "differences in double), float against double, chunked against whole and, "
                  "for cells that mix in their scan, mixed against separate, for every "
                  "registered cell and aggregator.\n"))
    return 0;
  const mtp::exp::Registry& r = mtp::exp::registry();
  if (!cell.empty() && !r.has_cell(cell))
    mtp::usage_fail("--cell '{}' is not a known cell (known: {})", cell, r.cell_names());
  if (!aggregator.empty() && !r.has_aggregator(aggregator))
    mtp::usage_fail("--aggregator '{}' is not one of {}", aggregator, r.aggregator_names());
  int pairs = 0, checks = 0, failed = 0;
  for (const mtp::exp::MixerEntry& e : r.mixers()) {
    if ((!cell.empty() && e.cell != cell) || (!aggregator.empty() && e.aggregator != aggregator))
      continue;
    const std::vector<mtp::exp::CheckResult> results = e.checks();
    const mtp::exp::CheckResult* worst = &results.front();
    int pair_failed = 0;
    for (const mtp::exp::CheckResult& c : results) {
      if (!c.passed()) {
        ++pair_failed;
        fmt::print("FAILED  {} {}: {} error {:.2e} > {:.0e}\n", e.cell, e.aggregator, c.name,
                   c.error, c.tolerance);
      } else if (verbose) {
        fmt::print("ok      {} {}: {} error {:.2e} <= {:.0e}\n", e.cell, e.aggregator, c.name,
                   c.error, c.tolerance);
      }
      if (c.error / std::max(c.tolerance, 1e-300) >
          worst->error / std::max(worst->tolerance, 1e-300))
        worst = &c;
    }
    fmt::print(
        "{:<6}  {:<14} {:<10} {:>3} checks; closest to its bound: {} ({:.2e}, bound {:.0e})\n",
        pair_failed ? "FAILED" : "ok", e.cell, e.aggregator, results.size(), worst->name,
        worst->error, worst->tolerance);
    ++pairs;
    checks += int(results.size());
    failed += pair_failed;
  }
  if (pairs == 0)
    mtp::usage_fail("--cell {} was not registered with --aggregator {}", cell, aggregator);
  fmt::print("check: {} pairs, {} checks, {} failed\n", pairs, checks, failed);
  return failed ? 1 : 0;
}

// Text → ids as one JSON array, or (--decode) a JSON array of ids → the text's bytes.
int cmd_tokenize(int argc, const char* const* argv) {
  std::string tokenizer, input;
  bool decode = false, strings = false;
  int threads = 0;
  po::options_description d("tokenize flags");
  d.add_options()("help,h", "show this help")  //
      ("tokenizer", po::value(&tokenizer),
       "a Hugging Face tokenizer.json (byte-level BPE); default: bytes (ids 0..255)")  //
      ("input", po::value(&input)->required(),
       "the text file (with --decode: a file holding a JSON array of ids); - reads stdin")  //
      ("decode", po::bool_switch(&decode), "ids to text: print the bytes of the tokens")    //
      ("strings", po::bool_switch(&strings),
       "the input is a JSON array of strings: print a JSON array of their id arrays")  //
      ("threads", po::value(&threads)->default_value(0), "threads (0: all cores)");
  po::variables_map vm;
  if (!cli::parse(argc, argv, d, vm,
                  "usage: mtp-exp tokenize [--tokenizer FILE] --input FILE [--decode | "
                  "--strings] [--threads N]\n"
                  "Prints the ids of the whole file as one JSON array; with --decode, reads "
                  "such an array and prints the text (no newline added); with --strings, reads "
                  "a JSON array of strings and prints an array of their id arrays."))
    return 0;
  if (threads < 0) mtp::usage_fail("--threads must be >= 0, got {}", threads);
  if (decode && strings) mtp::usage_fail("--strings encodes; it does not go with --decode");
  const std::unique_ptr<mtp::exp::Tokenizer> tok = mtp::exp::load_tokenizer(tokenizer);
  const std::vector<std::uint8_t> bytes =
      mtp::read_file_bytes(input == "-" ? "/dev/stdin" : input, "--input");
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (strings) {
    const nlohmann::json j = mtp::exp::parse_json(text, input);
    const auto texts = mtp::exp::json_to<std::vector<std::string>>(j, input);
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < texts.size(); ++i) {
      try {
        out.push_back(tok->encode(texts[i]));
      } catch (const mtp::Error& e) {
        mtp::fail("{}: string {}: {}", input, i, e.what());
      }
    }
    fmt::print("{}\n", out.dump());
    return 0;
  }
  if (decode) {
    const nlohmann::json j = mtp::exp::parse_json(text, input);
    const auto ids = mtp::exp::json_to<std::vector<std::int32_t>>(j, input);
    const std::string out = tok->decode(ids);
    if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size())
      throw std::system_error(errno, std::generic_category());
    return 0;
  }
  std::vector<std::int32_t> ids;
  try {
    ids = tok->encode_large(text, threads);
  } catch (const mtp::Error& e) {
    mtp::fail("--input {}: {}", input, e.what());
  }
  fmt::memory_buffer out;
  out.push_back('[');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out.push_back(',');
    fmt::format_to(std::back_inserter(out), "{}", ids[i]);
  }
  out.append(std::string_view("]\n"));
  fmt::print("{}", std::string_view(out.data(), out.size()));
  return 0;
}

int cmd_report(int argc, const char* const* argv) {
  std::string dir;
  mtp::exp::ReportOptions options;
  bool no_plots = false;
  po::options_description d("report flags");
  d.add_options()("help,h", "show this help")  //
      ("dir", po::value(&dir)->required(),
       "the sweep folder (also the first positional argument)")                            //
      ("no-plots", po::bool_switch(&no_plots), "tables and statistics only (no gnuplot)")  //
      ("hypotheses", po::value(&options.hypotheses),
       "a JSON file of hypotheses (families of paired comparisons; docs/contract.md §11.10): "
       "one table each, Holm-corrected, and a generated findings paragraph");
  po::positional_options_description pos;
  pos.add("dir", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(d).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: mtp-exp report DIR [--hypotheses FILE]\nWrites DIR/results.csv, "
                 "DIR/summary.csv, "
                 "DIR/REPORT.md and DIR/plots/ from the finished runs of a sweep.\n\n"
              << d << "\n";
    return 0;
  }
  cli::reject_empty_values(vm);
  po::notify(vm);
  options.plots = !no_plots;
  options.command_line = command_line("report", argc, argv);
  const mtp::exp::ReportSummary r = mtp::exp::write_report(dir, options);
  fmt::print("report: {} runs, {} configurations, {} paired comparisons, {}{} plots{}{}\n", r.runs,
             r.configurations, r.comparisons,
             r.hypotheses ? fmt::format("{} hypotheses, ", r.hypotheses) : "", r.plots,
             r.plots_skipped ? " (some not rendered: is gnuplot installed?)" : "",
             r.unfinished
                 ? fmt::format("; {} runs not finished (listed in REPORT.md)", r.unfinished)
                 : "");
  fmt::print("wrote {}/{{results.csv, summary.csv, REPORT.md{}}}\n", dir,
             options.plots ? ", plots/" : "");
  return 0;
}

int cmd_layer(int argc, const char* const* argv) {
  mtp::exp::LayerArgs a;
  std::string weights;
  po::options_description d("layer flags");
  d.add_options()("help,h", "show this help");
  cli::add_layer_flags(d, a.cell, a.perspectives, a.aggregator, weights, a.noise_mode, a.top_k);
  d.add_options()  //
      ("params", po::value(&a.params),
       "safetensors with the layer's parameters (docs/contract.md §11.8)")                       //
      ("input", po::value(&a.input), "safetensors with x (T,B,I) and optionally dy (T,B,O)")     //
      ("output", po::value(&a.output), "where to write y, and with dy grad.x and grad.<param>")  //
      ("dtype", po::value(&a.dtype)->default_value(a.dtype), "compute precision: f32 | f64")     //
      ("backend", po::value(&a.backend)->default_value(a.backend),
       "where the layer runs: cpu | cuda (a build with -DMTP_CUDA=ON and a visible GPU)")  //
      ("threads", po::value(&a.threads)->default_value(0), "threads (0: all cores)");
  po::variables_map vm;
  if (!cli::parse(argc, argv, d, vm,
                  "usage: mtp-exp layer --params P --input X --output Y [flags]\n"
                  "Evaluation mode (no selector noise); all initial states are zero."))
    return 0;
  if (vm.count("fixed-weights"))
    a.fixed_weights = cli::parse_list<double>("fixed-weights", weights);
  mtp::exp::run_layer(a);
  return 0;
}

std::string one_line(std::string s) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return s;
}

// A failure to write standard output (a full disk, a pipe whose reader left) is a
// failure of the command: the output the user asked for is not there.
bool stdout_failed(int& err) {
  err = 0;
  if (std::fflush(stdout) != 0) err = errno;
  if (std::ferror(stdout) && err == 0) err = EIO;
  return err != 0;
}

int stdout_error(int err) {
  fmt::print(stderr, "mtp-exp: error: writing to standard output failed ({})\n",
             std::strerror(err));
  return 1;
}

struct Command {
  const char* name;
  int (*run)(int argc, const char* const* argv);
};
constexpr Command kCommands[] = {
    {"train", cmd_train}, {"eval", cmd_eval},     {"layer", cmd_layer}, {"generate", cmd_generate},
    {"sweep", cmd_sweep}, {"report", cmd_report}, {"check", cmd_check}, {"tokenize", cmd_tokenize}};

int usage_error(const std::string& what, const std::string& command) {
  const bool known = std::any_of(std::begin(kCommands), std::end(kCommands),
                                 [&](const Command& c) { return command == c.name; });
  fmt::print(stderr, "mtp-exp: error: {} (see mtp-exp {}--help)\n", one_line(what),
             known && command != "train" ? command + " " : "");
  return 2;
}

}  // namespace

int mtp::exp::run_main(int argc, char** argv) {
  // A reader that goes away (| head) is a write error, named and with exit status 1, not
  // a silent death by signal; a training run then records why it stopped.
  std::signal(SIGPIPE, SIG_IGN);
  std::string command = "train";
  int skip = 0;
  if (argc > 1 && argv[1][0] != '-') {
    command = argv[1];
    skip = 1;
  }
  if (argc == 2 && std::string_view(argv[1]) == "--version") {
    fmt::print("mtp-exp {}\n", mtp::version);
    return 0;
  }
  // argv[skip] becomes the program name seen by the command's parser.
  const int cargc = argc - skip;
  const char* const* cargv = argv + skip;
  int status = 1, err = 0;
  try {
    const auto* c = std::find_if(std::begin(kCommands), std::end(kCommands),
                                 [&](const Command& k) { return command == k.name; });
    if (c == std::end(kCommands)) {
      std::string names;
      for (const Command& k : kCommands) names += (names.empty() ? "" : ", ") + std::string(k.name);
      mtp::usage_fail("unknown command '{}' (commands: {})", command, names);
    }
    status = c->run(cargc, cargv);
  } catch (const mtp::UsageError& e) {
    return usage_error(e.what(), command);
  } catch (const po::error& e) {
    return usage_error(e.what(), command);
  } catch (const mtp::exp::FolderBusy& e) {
    fmt::print(stderr, "mtp-exp: error: {}\n", one_line(e.what()));
    return 3;
  } catch (const mtp::Error& e) {
    fmt::print(stderr, "mtp-exp: error: {}\n", one_line(e.what()));
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // A file system call without an error code of its own: its path and the reason.
    fmt::print(stderr, "mtp-exp: error: {}: {}\n", one_line(e.path1().string()),
               e.code().message());
    return 1;
  } catch (const std::system_error& e) {
    // fmt::print's error when standard output fails (a full disk, /dev/full, a pipe
    // whose reader left).
    if (std::ferror(stdout)) return stdout_error(e.code().value());
    fmt::print(stderr, "mtp-exp: error: {}\n", one_line(e.code().message()));
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "mtp-exp: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    // Every failure mtp expects is an mtp::Error naming its file or flag: this is a bug.
    fmt::print(stderr, "mtp-exp: error: internal error ({}); please report it\n",
               one_line(e.what()));
    return 1;
  }
  if (stdout_failed(err)) return stdout_error(err);
  return status;
}
