#include "mtp/experiments/cli.hpp"

#include <fmt/format.h>

#include <iostream>

#include "mtp/experiments/registry.hpp"
#include "mtp/experiments/tasks.hpp"

namespace mtp::exp::cli {

// Parses argv into `vm`, rejecting positional arguments. Returns false after --help.
bool parse(int argc, const char* const* argv, const po::options_description& desc,
           po::variables_map& vm, const char* help_header) {
  po::store(po::command_line_parser(argc, argv).options(desc).positional({}).run(), vm);
  if (vm.count("help")) {
    std::cout << help_header << "\n" << desc << "\n";
    return false;
  }
  reject_empty_values(vm);
  po::notify(vm);
  return true;
}

void reject_empty_values(const po::variables_map& vm) {
  for (const auto& [name, value] : vm) {
    if (value.defaulted() || value.empty()) continue;
    if (const auto* s = boost::any_cast<std::string>(&value.value()); s && s->empty())
      usage_fail("--{} is empty; it needs a value", name);
  }
}

void add_layer_flags(po::options_description& d, std::string& cell, int& k, std::string& agg,
                     std::string& weights, std::string& noise_mode, int& top_k) {
  d.add_options()  //
      ("cell", po::value(&cell)->default_value(cell),
       ("recurrent cell: " + registry().cell_names(" | ")).c_str())                         //
      ("perspectives,K", po::value(&k)->default_value(k), "number of perspectives K >= 1")  //
      ("aggregator", po::value(&agg)->default_value(agg),
       ("how the K outputs combine: " + registry().aggregator_names(" | ")).c_str())  //
      ("fixed-weights", po::value(&weights),
       "fixed aggregator weights w1,...,wK summing to 1 (default: w1 = 0.5, the rest equal)")  //
      ("noise-mode", po::value(&noise_mode)->default_value(noise_mode),
       "selector noise: fixed (σ = --noise) | learned (σ = softplus(W_n x), noisy gating)")  //
      ("top-k", po::value(&top_k)->default_value(top_k),
       "sparse selector: softmax over the k largest logits only (0: all K)");
}

namespace {

// "mqar (multi-query associative recall) | ...", from the task registry.
std::string task_help() {
  std::string s;
  for (const TaskSpec& t : tasks().specs())
    s += (s.empty() ? "" : " | ") + t.name + " (" + t.help + ")";
  return s;
}

// "mqar 4000, lag-recall 1500, ...": one task default per task.
template <class T>
std::string task_defaults_help(T TaskDefaults::*field, bool only_reading_vocab = false) {
  std::string s;
  for (const TaskSpec& t : tasks().specs())
    if (!only_reading_vocab || t.reads_vocab)
      s += fmt::format("{}{} {}", s.empty() ? "" : ", ", t.name, t.defaults.*field);
  return s;
}

}  // namespace

TrainFlags::TrainFlags() {
  d_.add_options()("help,h", "show this help");
  add_layer_flags(d_, c_.cell, c_.perspectives, c_.aggregator, weights_, c_.noise_mode, c_.top_k);
  d_.add_options()  //
      ("noise", po::value(&c_.noise)->default_value(c_.noise, fmt::format("{:g}", c_.noise)),
       "selector noise σ on the logits while training (learned aggregator)")  //
      ("decay-spread",
       po::value(&c_.decay_spread)
           ->default_value(c_.decay_spread, fmt::format("{:g}", c_.decay_spread)),
       "decay of perspective k = base + s·(k − (K−1)/2)")  //
      ("combine", po::value(&c_.combine)->default_value(c_.combine),
       "where the K views combine: layer (in every layer) | head (K streams through the "
       "whole model, combined after the head: the paper's released code)")  //
      ("per-perspective", po::value(&c_.per_perspective)->default_value(c_.per_perspective),
       "what each perspective has its own of: decay | shift (the token-shift mixes, one "
       "decay shared: the paper's released code; RWKV) | both")                          //
      ("layers", po::value(&c_.layers)->default_value(c_.layers), "number of blocks L")  //
      ("width", po::value(&c_.width)->default_value(c_.width),
       "model width W (cell hidden H = W)")  //
      ("init-from", po::value(&c_.init_from),
       "start from a trained model (safetensors state dict; K may differ: decays grow from "
       "its own)")  //
      ("freeze", po::value(&c_.freeze),
       "freeze a parameter group: base (train only the perspectives, the paper's protocol)")  //
      ("no-ffn", po::bool_switch(&no_ffn_),
       "blocks without the FFN (4x MLP; RWKV: channel mix)")  //
      ("steps", po::value(&c_.steps)->default_value(c_.steps, "task default"),
       ("training steps (" + task_defaults_help(&TaskDefaults::steps) + ")").c_str())  //
      ("batch", po::value(&c_.batch)->default_value(c_.batch, "task default"),
       ("sequences per step B (" + task_defaults_help(&TaskDefaults::batch) + ")").c_str())  //
      ("seq-len", po::value(&c_.seq_len)->default_value(c_.seq_len, "task default"),
       ("sequence length T (" + task_defaults_help(&TaskDefaults::seq_len) + ")").c_str())  //
      ("lr", po::value(&c_.lr)->default_value(c_.lr, fmt::format("{:g}", c_.lr)),
       "peak learning rate (AdamW)")  //
      ("warmup", po::value(&c_.warmup)->default_value(c_.warmup, fmt::format("{:g}", c_.warmup)),
       "warmup, as a fraction of the steps; then cosine decay to lr/10")  //
      ("weight-decay",
       po::value(&c_.weight_decay)
           ->default_value(c_.weight_decay, fmt::format("{:g}", c_.weight_decay)),
       "AdamW decoupled weight decay (matrices only)")  //
      ("clip", po::value(&c_.clip)->default_value(c_.clip, fmt::format("{:g}", c_.clip)),
       "global gradient-norm clip (0: off)")                                                   //
      ("seed", po::value(&seed_)->default_value(0), "seed of initialisation, data and noise")  //
      ("task", po::value(&c_.task)->default_value(c_.task), task_help().c_str())               //
      ("data", po::value(&c_.data), "text corpus file for --task text")                        //
      ("tokenizer", po::value(&c_.tokenizer),
       "--task text: a Hugging Face tokenizer.json (byte-level BPE, e.g. GPT-NeoX's); "
       "default: bytes")  //
      ("token-cache", po::value(&c_.token_cache),
       "--task text with --tokenizer: the folder of tokenized corpora (default: "
       "$XDG_CACHE_HOME/mtp/tokens or ~/.cache/mtp/tokens)")  //
      ("carry-state", po::bool_switch(&c_.carry_state),
       "text: carry the recurrent state across consecutive chunks of B streams (truncated BPTT)")  //
      ("vocab", po::value(&c_.vocab)->default_value(c_.vocab, "task default"),
       ("vocabulary, or data tokens (" + task_defaults_help(&TaskDefaults::vocab, true) + ")")
           .c_str())                                                                    //
      ("pairs", po::value(&c_.pairs)->default_value(c_.pairs), "mqar key-value pairs")  //
      ("lags", po::value(&lags_)->default_value("2,8,32,128"),
       "lag-recall: the lags queried, one query token each")  //
      ("copy-tokens", po::value(&c_.copy_tokens)->default_value(c_.copy_tokens),
       "selective-copy: data tokens M to reproduce")  //
      ("val-batches", po::value(&c_.val_batches)->default_value(c_.val_batches),
       "validation set size, in batches")  //
      ("out", po::value(&c_.out),
       "output folder (default runs/<task>-<cell>-k<K>-<agg>-s<seed>)")                         //
      ("threads", po::value(&c_.threads)->default_value(c_.threads), "threads (0: all cores)")  //
      ("eval-every", po::value(&c_.eval_every)->default_value(c_.eval_every),
       "validate every N steps (0: only at the end)")  //
      ("log-every", po::value(&c_.log_every)->default_value(c_.log_every),
       "log line every N steps when not on a terminal (0: ~20 lines)")  //
      ("checkpoint-every", po::value(&c_.checkpoint_every)->default_value(c_.checkpoint_every),
       "write the training state (model, optimizer, progress) every N steps and at the end, "
       "for --resume (0: never)")  //
      ("resume", po::value(&resume_),
       "continue the run in this folder from its last training state, with its own settings "
       "(only --threads may be given with it)")  //
      ("overwrite", po::bool_switch(&overwrite_),
       "replace the run already in the --out folder (otherwise such a folder is refused)");
  // Registered tasks' own flags, after train's (whose names they cannot take).
  for (const TaskSpec& t : tasks().specs())
    for (const TaskFlag& f : t.flags) {
      if (has(f.name))
        fail("task '{}' declares the flag --{}, which train or another task already has", t.name,
             f.name);
      d_.add_options()(f.name.c_str(),
                       po::value(&task_flags_[f.name])->default_value(f.default_value),
                       (t.name + ": " + f.help).c_str());
    }
}

bool TrainFlags::parse(int argc, const char* const* argv, const char* help_header) {
  po::variables_map vm;
  if (!cli::parse(argc, argv, d_, vm, help_header)) return false;
  finish(vm);
  return true;
}

void TrainFlags::finish(const po::variables_map& vm) {
  if (!resume_.empty())
    for (const auto& [name, value] : vm)
      if (!value.defaulted() && name != "resume" && name != "threads")
        usage_fail(
            "--resume continues a run with the settings it was started with; --{} cannot "
            "be given with it",
            name);
  // A task's own sizes mean nothing to another task: given, they are a mistake (the
  // config keeps their defaults, so only here can it be seen).
  const TaskSpec& task = tasks().at(c_.task);
  for (const TaskSpec& other : tasks().specs()) {
    std::vector<std::string> flags = other.own_flags;
    for (const TaskFlag& f : other.flags) flags.push_back(f.name);
    for (const std::string& flag : flags)
      if (other.name != c_.task && vm.count(flag) && !vm[flag].defaulted() &&
          std::find(task.own_flags.begin(), task.own_flags.end(), flag) == task.own_flags.end())
        usage_fail("--{} applies to --task {}, not {}", flag, other.name, c_.task);
  }
  c_.task_options.clear();
  for (const TaskFlag& f : task.flags) c_.task_options[f.name] = task_flags_.at(f.name);
  if (!vm["vocab"].defaulted() && !task.reads_vocab)
    usage_fail("--vocab does not apply to --task {} (its vocabulary is its own)", c_.task);
  if (seed_ < 0) usage_fail("--seed must be >= 0, got {}", seed_);
  c_.seed = static_cast<std::uint64_t>(seed_);
  c_.ffn = !no_ffn_;
  if (vm.count("fixed-weights")) c_.fixed_weights = parse_list<double>("fixed-weights", weights_);
  c_.lags = parse_list<int>("lags", lags_);
  // Sizes the user did not give come from the task.
  const TaskDefaults td = task_defaults(c_.task);
  if (vm["steps"].defaulted()) c_.steps = td.steps;
  if (vm["batch"].defaulted()) c_.batch = td.batch;
  if (vm["seq-len"].defaulted()) c_.seq_len = td.seq_len;
  if (vm["vocab"].defaulted()) c_.vocab = td.vocab;
}

// Boost reads an empty name as a prefix of every option ("ambiguous"): no flag is empty.
bool TrainFlags::has(const std::string& name) const {
  return !name.empty() && d_.find_nothrow(name, false) != nullptr;
}

bool TrainFlags::is_switch(const std::string& name) const {
  if (name.empty()) return false;
  const po::option_description* o = d_.find_nothrow(name, false);
  return o && o->semantic()->max_tokens() == 0;
}

TrainConfig parse_train_args(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"mtp-exp"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  TrainFlags flags;
  if (!flags.parse(int(argv.size()), argv.data(), "")) usage_fail("--help is not a run's flag");
  return flags.config();
}

}  // namespace mtp::exp::cli
