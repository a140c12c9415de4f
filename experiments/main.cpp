// mtp-exp: train and evaluate recurrent models with K temporal perspectives.
//
//   mtp-exp [train] [flags]              train one configuration (the default command)
//   mtp-exp eval --checkpoint FILE       re-evaluate a saved model
//   mtp-exp layer --params P --input X --output Y [flags]   run one wrapped layer
//
// Exit status: 0 on success, 2 on a usage error (bad flag or value), 1 on any other
// failure (unreadable file, malformed data, numerical failure). Errors are one line.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <iostream>
#include <sstream>
#include <string>

#include "mtp/core/error.hpp"
#include "mtp/experiments/config.hpp"
#include "mtp/experiments/generate.hpp"
#include "mtp/experiments/layer_command.hpp"
#include "mtp/experiments/trainer.hpp"

namespace po = boost::program_options;
using mtp::exp::TrainConfig;

namespace {

constexpr const char* kUsage =
    "usage: mtp-exp [train] [flags]                 train and evaluate one configuration\n"
    "       mtp-exp eval --checkpoint FILE [flags]  re-evaluate a saved model\n"
    "       mtp-exp layer --params P --input X --output Y [flags]\n"
    "                                               run one wrapped layer (forward, backward)\n"
    "       mtp-exp generate --checkpoint FILE --prompt TEXT [--tokens N]\n"
    "                                               stream text from a byte-level model\n"
    "       mtp-exp COMMAND --help                  the flags of a command\n";

// A comma-separated list of numbers for `flag` (w1,...,wK; 2,8,32,128).
template <class T>
std::vector<T> parse_list(const char* flag, const std::string& s) {
  std::vector<T> out;
  std::stringstream ss(s);
  std::string item;
  if (!s.empty() && s.back() == ',')
    mtp::usage_fail("--{} '{}' ends with a comma (expected a,b,...)", flag, s);
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    T v{};
    try {
      if constexpr (std::is_integral_v<T>)
        v = T(std::stoll(item, &used));
      else
        v = T(std::stod(item, &used));
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size())
      mtp::usage_fail("--{}: '{}' is not {} (expected a,b,...)", flag, item,
                      std::is_integral_v<T> ? "an integer" : "a number");
    out.push_back(v);
  }
  if (out.empty()) mtp::usage_fail("--{} is empty (expected a,b,...)", flag);
  return out;
}

// Parses argv into `vm`, rejecting positional arguments. Returns false after --help.
bool parse(int argc, const char* const* argv, const po::options_description& desc,
           po::variables_map& vm, const char* help_header) {
  po::store(po::command_line_parser(argc, argv).options(desc).positional({}).run(), vm);
  if (vm.count("help")) {
    std::cout << help_header << "\n" << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

void add_layer_flags(po::options_description& d, std::string& cell, int& k, std::string& agg,
                     std::string& weights, std::string& noise_mode, int& top_k) {
  d.add_options()                                                                                 //
      ("cell", po::value(&cell)->default_value(cell), "recurrent cell: gru | lstm | rwkv | ssm")  //
      ("perspectives,K", po::value(&k)->default_value(k), "number of perspectives K >= 1")        //
      ("aggregator", po::value(&agg)->default_value(agg),
       "how the K outputs combine: mean | learned (softmax selector) | fixed")  //
      ("fixed-weights", po::value(&weights),
       "fixed aggregator weights w1,...,wK summing to 1 (default: w1 = 0.5, the rest equal)")  //
      ("noise-mode", po::value(&noise_mode)->default_value(noise_mode),
       "selector noise: fixed (σ = --noise) | learned (σ = softplus(W_n x), noisy gating)")  //
      ("top-k", po::value(&top_k)->default_value(top_k),
       "sparse selector: softmax over the k largest logits only (0: all K)");
}

int cmd_train(int argc, const char* const* argv) {
  TrainConfig c;
  std::string weights, lags;
  long long seed = 0;
  bool no_ffn = false;
  po::options_description d("train flags (default command)");
  d.add_options()("help,h", "show this help");
  add_layer_flags(d, c.cell, c.perspectives, c.aggregator, weights, c.noise_mode, c.top_k);
  d.add_options()  //
      ("noise", po::value(&c.noise)->default_value(c.noise, fmt::format("{:g}", c.noise)),
       "selector noise σ on the logits while training (learned aggregator)")  //
      ("decay-spread",
       po::value(&c.decay_spread)
           ->default_value(c.decay_spread, fmt::format("{:g}", c.decay_spread)),
       "decay of perspective k = base + s·(k − (K−1)/2)")                              //
      ("layers", po::value(&c.layers)->default_value(c.layers), "number of blocks L")  //
      ("width", po::value(&c.width)->default_value(c.width),
       "model width W (cell hidden H = W)")  //
      ("init-from", po::value(&c.init_from),
       "start from a trained model (safetensors state dict; K may differ: decays grow from "
       "its own)")  //
      ("freeze", po::value(&c.freeze),
       "freeze a parameter group: base (train only the perspectives, the paper's protocol)")      //
      ("no-ffn", po::bool_switch(&no_ffn), "blocks without the FFN (4x MLP; RWKV: channel mix)")  //
      ("steps", po::value(&c.steps)->default_value(c.steps, "task default"),
       "training steps (mqar 4000, lag-recall 1500, selective-copy 3000, text 2000)")  //
      ("batch", po::value(&c.batch)->default_value(c.batch, "task default"),
       "sequences per step B (lag-recall 16, others 32)")  //
      ("seq-len", po::value(&c.seq_len)->default_value(c.seq_len, "task default"),
       "sequence length T (mqar 32, lag-recall 256, selective-copy and text 64)")  //
      ("lr", po::value(&c.lr)->default_value(c.lr, fmt::format("{:g}", c.lr)),
       "peak learning rate (AdamW)")  //
      ("warmup", po::value(&c.warmup)->default_value(c.warmup, fmt::format("{:g}", c.warmup)),
       "warmup, as a fraction of the steps; then cosine decay to lr/10")  //
      ("weight-decay",
       po::value(&c.weight_decay)
           ->default_value(c.weight_decay, fmt::format("{:g}", c.weight_decay)),
       "AdamW decoupled weight decay (matrices only)")  //
      ("clip", po::value(&c.clip)->default_value(c.clip, fmt::format("{:g}", c.clip)),
       "global gradient-norm clip (0: off)")                                                  //
      ("seed", po::value(&seed)->default_value(0), "seed of initialisation, data and noise")  //
      ("task", po::value(&c.task)->default_value(c.task),
       "mqar (associative recall) | lag-recall (per-lag recall) | selective-copy | text "
       "(byte-level "
       "LM on --data)")                                                 //
      ("data", po::value(&c.data), "text corpus file for --task text")  //
      ("carry-state", po::bool_switch(&c.carry_state),
       "text: carry the recurrent state across consecutive chunks of B streams (truncated BPTT)")  //
      ("vocab", po::value(&c.vocab)->default_value(c.vocab, "task default"),
       "mqar: vocabulary (32); lag-recall, selective-copy: data tokens (16)")         //
      ("pairs", po::value(&c.pairs)->default_value(c.pairs), "mqar key-value pairs")  //
      ("lags", po::value(&lags)->default_value("2,8,32,128"),
       "lag-recall: the lags queried, one query token each")  //
      ("copy-tokens", po::value(&c.copy_tokens)->default_value(c.copy_tokens),
       "selective-copy: data tokens M to reproduce")  //
      ("val-batches", po::value(&c.val_batches)->default_value(c.val_batches),
       "validation set size, in batches")  //
      ("out", po::value(&c.out),
       "output folder (default runs/<task>-<cell>-k<K>-<agg>-s<seed>)")                       //
      ("threads", po::value(&c.threads)->default_value(c.threads), "threads (0: all cores)")  //
      ("eval-every", po::value(&c.eval_every)->default_value(c.eval_every),
       "validate every N steps (0: only at the end)")  //
      ("log-every", po::value(&c.log_every)->default_value(c.log_every),
       "log line every N steps when not on a terminal (0: ~20 lines)");
  po::variables_map vm;
  if (!parse(argc, argv, d, vm, kUsage)) return 0;
  if (seed < 0) mtp::usage_fail("--seed must be >= 0, got {}", seed);
  c.seed = static_cast<std::uint64_t>(seed);
  c.ffn = !no_ffn;
  if (vm.count("fixed-weights")) c.fixed_weights = parse_list<double>("fixed-weights", weights);
  c.lags = parse_list<int>("lags", lags);
  // Sizes the user did not give come from the task.
  const mtp::exp::TaskDefaults td = mtp::exp::task_defaults(c.task);
  if (vm["steps"].defaulted()) c.steps = td.steps;
  if (vm["batch"].defaulted()) c.batch = td.batch;
  if (vm["seq-len"].defaulted()) c.seq_len = td.seq_len;
  if (vm["vocab"].defaulted()) c.vocab = td.vocab;
  mtp::exp::run_training(c);
  return 0;
}

int cmd_eval(int argc, const char* const* argv) {
  std::string checkpoint, data;
  int threads = 0;
  bool json = false;
  po::options_description d("eval flags");
  d.add_options()("help,h", "show this help")  //
      ("checkpoint", po::value(&checkpoint)->required(),
       "model.safetensors written by training")                                         //
      ("data", po::value(&data), "text checkpoints: evaluate on this file's last 10%")  //
      ("threads", po::value(&threads)->default_value(0), "threads (0: all cores)")      //
      ("json", po::bool_switch(&json), "print the result as JSON");
  po::variables_map vm;
  if (!parse(argc, argv, d, vm, "usage: mtp-exp eval --checkpoint FILE [flags]")) return 0;
  const nlohmann::json r = mtp::exp::run_evaluation(checkpoint, data, threads);
  if (json) {
    fmt::print("{}\n", r.dump(2));
  } else if (r.contains("bits_per_byte")) {
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
      ("tokens", po::value(&a.tokens)->default_value(a.tokens), "bytes to generate")    //
      ("temperature", po::value(&a.temperature)->default_value(a.temperature, "1"),
       "sampling temperature (0: greedy)")                                            //
      ("seed", po::value(&seed)->default_value(0), "seed of the sampling")            //
      ("threads", po::value(&a.threads)->default_value(0), "threads (0: all cores)")  //
      ("stats", po::bool_switch(&stats), "print timing per token to stderr at the end");
  po::variables_map vm;
  if (!parse(argc, argv, d, vm,
             "usage: mtp-exp generate --checkpoint FILE --prompt TEXT [--tokens N] "
             "[--temperature T]\nStreams one byte at a time through the recurrent state."))
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

int cmd_layer(int argc, const char* const* argv) {
  mtp::exp::LayerArgs a;
  std::string weights;
  po::options_description d("layer flags");
  d.add_options()("help,h", "show this help");
  add_layer_flags(d, a.cell, a.perspectives, a.aggregator, weights, a.noise_mode, a.top_k);
  d.add_options()                                                                                //
      ("params", po::value(&a.params), "safetensors with the layer's parameters (DESIGN §3)")    //
      ("input", po::value(&a.input), "safetensors with x (T,B,I) and optionally dy (T,B,O)")     //
      ("output", po::value(&a.output), "where to write y, and with dy grad.x and grad.<param>")  //
      ("dtype", po::value(&a.dtype)->default_value(a.dtype), "compute precision: f32 | f64")     //
      ("threads", po::value(&a.threads)->default_value(0), "threads (0: all cores)");
  po::variables_map vm;
  if (!parse(argc, argv, d, vm,
             "usage: mtp-exp layer --params P --input X --output Y [flags]\n"
             "Evaluation mode (no selector noise); all initial states are zero."))
    return 0;
  if (vm.count("fixed-weights")) a.fixed_weights = parse_list<double>("fixed-weights", weights);
  mtp::exp::run_layer(a);
  return 0;
}

std::string one_line(std::string s) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return s;
}

int usage_error(const std::string& what, const std::string& command) {
  const bool known =
      command == "train" || command == "eval" || command == "layer" || command == "generate";
  fmt::print(stderr, "mtp-exp: error: {} (see mtp-exp {}--help)\n", one_line(what),
             known && command != "train" ? command + " " : "");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string command = "train";
  int skip = 0;
  if (argc > 1 && argv[1][0] != '-') {
    command = argv[1];
    skip = 1;
  }
  // argv[skip] becomes the program name seen by the command's parser.
  const int cargc = argc - skip;
  const char* const* cargv = argv + skip;
  try {
    if (command == "train") return cmd_train(cargc, cargv);
    if (command == "eval") return cmd_eval(cargc, cargv);
    if (command == "layer") return cmd_layer(cargc, cargv);
    if (command == "generate") return cmd_generate(cargc, cargv);
    mtp::usage_fail("unknown command '{}' (commands: train, eval, layer, generate)", command);
  } catch (const mtp::UsageError& e) {
    return usage_error(e.what(), command);
  } catch (const po::error& e) {
    return usage_error(e.what(), command);
  } catch (const std::exception& e) {
    fmt::print(stderr, "mtp-exp: error: {}\n", one_line(e.what()));
    return 1;
  }
}
