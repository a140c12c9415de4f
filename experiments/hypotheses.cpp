#include "mtp/experiments/hypotheses.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "mtp/core/error.hpp"
#include "mtp/experiments/json_file.hpp"

namespace mtp::exp::reporting {
namespace {

std::string setting_key(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

SettingValues read_settings(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: expected an object of settings, found {}", where, json_excerpt(j));
  SettingValues out;
  for (const auto& [name, v] : j.items()) {
    if (name.empty() || name[0] == '-')
      fail(
          "{}: '{}': name a setting as config.json does (decay_spread) or as its flag without "
          "the dashes (decay-spread)",
          where, name);
    std::vector<std::string>& values = out[setting_key(name)];
    for (const nlohmann::json& e : v.is_array() ? v : nlohmann::json::array({v})) {
      if (!e.is_string() && !e.is_number() && !e.is_boolean())
        fail("{}: '{}' must be a value or a list of values, found {}", where, name,
             json_excerpt(e));
      values.push_back(value_text(e));
    }
    if (values.empty()) fail("{}: '{}' lists no values", where, name);
  }
  return out;
}

bool parse_number(const std::string& s, double& v) {
  const auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), v);
  return err == std::errc() && end == s.data() + s.size();
}

bool same_value(const std::string& a, const std::string& b) {
  double x = 0, y = 0;
  if (parse_number(a, x) && parse_number(b, y)) return x == y;
  return a == b;
}

// A configuration's value of a setting: its varying settings, else (the same for every
// run) its first run's config. `key` is canonical (decay_spread); a program's own task
// flags keep their hyphens in config.json (recall-position), so both spellings are tried.
std::optional<std::string> setting_of(const Configuration& c, const std::string& key) {
  std::string hyphens = key;
  std::replace(hyphens.begin(), hyphens.end(), '_', '-');
  for (const std::string& k : {key, hyphens}) {
    if (auto it = c.settings.find(k); it != c.settings.end()) return it->second;
    const nlohmann::json& config = c.runs.front()->config;
    if (config.contains(k)) return value_text(config[k]);
  }
  return std::nullopt;
}

// Settings a comparison may not name: the replicate and bookkeeping.
const std::set<std::string> kNotComparable = {"seed", "out", "threads", "log_every", "eval_every"};

// A name no configuration has is a typo, not a hypothesis that matches nothing.
void check_names(const HypothesisSpec& spec, const std::vector<Configuration>& configs) {
  for (const auto& [treatment, control] : spec.comparisons)
    for (const SettingValues* side : {&treatment, &control})
      for (const auto& named : *side) {
        const std::string& key = named.first;  // (clang 14 captures no structured binding)
        if (kNotComparable.count(key))
          fail("hypothesis {}: '{}' is not a setting a comparison can name", spec.id, key);
        if (std::none_of(configs.begin(), configs.end(),
                         [&](const Configuration& c) { return setting_of(c, key).has_value(); }))
          fail("hypothesis {}: no run has a setting '{}'", spec.id, key);
      }
}

bool selects(const Configuration& c, const SettingValues& treatment) {
  for (const auto& [key, values] : treatment) {
    const std::optional<std::string> v = setting_of(c, key);
    if (!v || std::none_of(values.begin(), values.end(),
                           [&](const std::string& w) { return same_value(*v, w); }))
      return false;
  }
  return true;
}

// Every combination of the control's values, as single assignments.
std::vector<std::map<std::string, std::string>> assignments(const SettingValues& control) {
  std::vector<std::map<std::string, std::string>> out(1);
  for (const auto& [key, values] : control) {
    std::vector<std::map<std::string, std::string>> next;
    for (const auto& partial : out)
      for (const std::string& v : values) {
        next.push_back(partial);
        next.back()[key] = v;
      }
    out = std::move(next);
  }
  return out;
}

const Configuration* find_control(const Configuration& t,
                                  const std::map<std::string, std::string>& assign,
                                  const std::vector<Configuration>& configs,
                                  const std::vector<std::string>& keys) {
  for (const Configuration& c : configs) {
    if (&c == &t) continue;
    bool match = true;
    for (const std::string& k : keys) {
      const std::optional<std::string> want =
          assign.count(k) ? std::optional<std::string>(assign.at(k)) : setting_of(t, k);
      const std::optional<std::string> have = setting_of(c, k);
      if (want.has_value() != have.has_value() || (want && !same_value(*want, *have))) {
        match = false;
        break;
      }
    }
    // A control setting that does not vary must already hold the asked value.
    for (const auto& [k, v] : assign)
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        const std::optional<std::string> have = setting_of(c, k);
        if (!have || !same_value(*have, v)) match = false;
      }
    if (match) return &c;
  }
  return nullptr;
}

ComparisonRow compare(const Configuration& t, const Configuration& c,
                      const std::optional<std::pair<double, double>>& band) {
  ComparisonRow row;
  row.treatment = &t;
  row.control = &c;
  std::vector<double> base, with;
  // Per query group, by name (a sweep may vary the lags): (control, treatment) values.
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> groups;
  for (const Run* r : t.runs)
    for (const Run* s : c.runs)
      if (s->seed == r->seed) {
        base.push_back(s->headline());
        with.push_back(r->headline());
        for (const auto& [name, value] : r->groups)
          for (const auto& [other, control_value] : s->groups)
            if (other == name) {
              groups[name].first.push_back(control_value);
              groups[name].second.push_back(value);
            }
      }
  row.pairs = int(base.size());
  row.control_metric = mean_ci(c.headline());
  if (band)
    row.control_in_band =
        row.control_metric.mean >= band->first && row.control_metric.mean <= band->second;
  row.difference = row.effect = MeanCI{row.pairs, kNaN, kNaN, kNaN};
  if (base.empty()) return row;  // no common seed: nothing to compare
  const PairedTest test = paired_t_test(base, with);
  row.difference = test.difference;
  row.effect = paired_effect_size(base, with);
  for (const auto& [name, g] : groups)
    if (g.first.size() == base.size())
      row.group_difference.emplace_back(name, paired_t_test(g.first, g.second).difference);
  if (row.pairs >= 2) {
    std::vector<double> d;
    for (size_t i = 0; i < base.size(); ++i) d.push_back(with[i] - base[i]);
    const double df = double(row.pairs - 1);
    const double sd = sample_sd(d);
    // Identical differences (no spread) are no test, whatever their size.
    row.p = sd > 0 ? test.p_value : kNaN;
    if (sd == 0) return row;
    row.detectable = (student_t_quantile(0.975, df) + student_t_quantile(0.8, df)) * sd /
                     std::sqrt(double(row.pairs));
    // The pairs that would detect half the control's seed-to-seed sd (the design's aim).
    const double target = 0.5 * sample_sd(c.headline());
    for (int n = 2; target > 0 && n <= 1000 && row.pairs_for_half_sd == 0; ++n)
      if ((student_t_quantile(0.975, n - 1) + student_t_quantile(0.8, n - 1)) * sd /
              std::sqrt(double(n)) <=
          target)
        row.pairs_for_half_sd = n;
  }
  return row;
}

// The settings that tell a hypothesis's rows apart; the cell always, when it varies.
std::vector<std::string> distinguishing(const HypothesisResult& h,
                                        const std::vector<std::string>& keys) {
  std::set<std::string> compared;  // the settings a control changes: always shown
  for (const auto& comparison : h.spec->comparisons)
    for (const auto& [k, values] : comparison.second) compared.insert(k);
  std::vector<std::string> out;
  for (const std::string& k : keys) {
    std::set<std::string> values;
    for (const ComparisonRow& r : h.rows) values.insert(setting_of(*r.treatment, k).value_or(""));
    if (values.size() > 1 || k == "cell" || compared.count(k)) out.push_back(k);
  }
  return out;
}

// "cell=gru perspectives=3", from the distinguishing settings.
std::string short_label(const Configuration& c, const std::vector<std::string>& shown) {
  std::string s;
  for (const std::string& k : shown)
    if (const auto v = setting_of(c, k)) {
      if (!s.empty()) s += ' ';
      s += fmt::format("{}={}", k, *v);
    }
  return s.empty() ? c.label : s;
}

// The settings in which the control differs from its treatment: "perspectives=1" (for a
// control that was not run, the settings asked for).
std::string control_label(const ComparisonRow& r, const std::vector<std::string>& keys) {
  std::string s;
  auto add = [&](const std::string& k, const std::string& v) {
    if (!s.empty()) s += ' ';
    s += fmt::format("{}={}", k, v);
  };
  if (!r.control) {
    for (const auto& [k, v] : r.asked) add(k, v);
    return s + " (not run)";
  }
  for (const std::string& k : keys) {
    const auto t = setting_of(*r.treatment, k), c = setting_of(*r.control, k);
    if (c && (!t || !same_value(*t, *c))) add(k, *c);
  }
  return s;
}

// The control by the shown settings and those in which it differs, each once.
std::string control_in_full(const ComparisonRow& r, const std::vector<std::string>& shown,
                            const std::vector<std::string>& keys) {
  std::vector<std::string> named = shown;
  for (const std::string& k : keys) {
    const auto t = setting_of(*r.treatment, k), c = setting_of(*r.control, k);
    if (c && (!t || !same_value(*t, *c)) && std::find(named.begin(), named.end(), k) == named.end())
      named.push_back(k);
  }
  std::string s;
  for (const std::string& k : keys)
    if (std::find(named.begin(), named.end(), k) != named.end())
      if (const auto v = setting_of(*r.control, k)) {
        if (!s.empty()) s += ' ';
        s += fmt::format("{}={}", k, *v);
      }
  return s;
}

bool tested(const ComparisonRow& r) {
  return !std::isnan(r.p);
}

std::string signed_num(double v, int digits = 4) {
  return std::isnan(v) ? "–" : fmt::format("{:+.{}f}", v, digits);
}
std::string interval(const MeanCI& ci, int digits = 4) {
  return std::isnan(ci.lo)
             ? "–"
             : fmt::format("[{}, {}]", signed_num(ci.lo, digits), signed_num(ci.hi, digits));
}
std::string p_text(double p) {
  return std::isnan(p) ? "–" : fmt::format("{:.3g}", p);
}

enum class Verdict { holds, reversed, unresolved, untested };
Verdict verdict(const ComparisonRow& r, bool higher_is_better) {
  if (!tested(r)) return Verdict::untested;
  if (r.p_holm >= 0.05) return Verdict::unresolved;
  const bool better = higher_is_better ? r.difference.mean > 0 : r.difference.mean < 0;
  return better ? Verdict::holds : Verdict::reversed;
}
const char* verdict_text(Verdict v) {
  switch (v) {
    case Verdict::holds:
      return "holds";
    case Verdict::reversed:
      return "reversed";
    case Verdict::unresolved:
      return "not resolved";
    case Verdict::untested:
      return "no test";
  }
  return "";
}

}  // namespace

HypothesesFile read_hypotheses(const std::string& path) {
  const nlohmann::json j = read_json_file(path);
  if (!j.is_object()) fail("{}: expected an object, found {}", path, json_excerpt(j));
  // A misspelt key would silently drop what it says (the band, a control): refused.
  auto only = [](const nlohmann::json& o, std::initializer_list<const char*> known,
                 const std::string& where) {
    for (const auto& item : o.items())
      if (const std::string& k = item.key();
          std::none_of(known.begin(), known.end(), [&](const char* n) { return k == n; }))
        fail("{}: unknown key '{}' (expected {})", where, k, fmt::join(known, ", "));
  };
  only(j, {"baseline_band", "note", "hypotheses"}, path);
  HypothesesFile file;
  if (j.contains("note")) file.note = json_field<std::string>(j, "note", path);
  if (j.contains("baseline_band")) {
    const auto band = json_field<std::vector<double>>(j, "baseline_band", path);
    if (band.size() != 2 || !(band[0] <= band[1]))
      fail("{}: baseline_band must be [low, high] with low <= high", path);
    file.baseline_band = std::make_pair(band[0], band[1]);
  }
  const nlohmann::json& list = json_member(j, "hypotheses", path);
  if (!list.is_array() || list.empty()) fail("{}: 'hypotheses' must be a non-empty list", path);
  std::set<std::string> ids;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = fmt::format("{}: hypotheses[{}]", path, i);
    HypothesisSpec h;
    if (list[i].is_object()) only(list[i], {"id", "claim", "comparisons"}, at);
    h.id = json_field<std::string>(list[i], "id", at);
    h.claim = json_field<std::string>(list[i], "claim", at);
    if (h.id.empty() || !ids.insert(h.id).second)
      fail("{}: the id '{}' is empty or not unique", at, h.id);
    const nlohmann::json& comparisons = json_member(list[i], "comparisons", at);
    if (!comparisons.is_array() || comparisons.empty())
      fail("{}: 'comparisons' must be a non-empty list", at);
    for (size_t c = 0; c < comparisons.size(); ++c) {
      const std::string cat = fmt::format("{}: comparisons[{}]", at, c);
      if (comparisons[c].is_object()) only(comparisons[c], {"treatment", "control"}, cat);
      SettingValues control = read_settings(json_member(comparisons[c], "control", cat), cat);
      if (control.empty()) fail("{}: the control changes no setting", cat);
      h.comparisons.emplace_back(read_settings(json_member(comparisons[c], "treatment", cat), cat),
                                 std::move(control));
    }
    file.hypotheses.push_back(std::move(h));
  }
  return file;
}

std::vector<HypothesisResult> test_hypotheses(const HypothesesFile& file,
                                              const std::vector<Configuration>& configs,
                                              const std::vector<std::string>& keys) {
  std::vector<HypothesisResult> out;
  for (const HypothesisSpec& spec : file.hypotheses) {
    check_names(spec, configs);
    HypothesisResult h;
    h.spec = &spec;
    std::set<std::pair<const Configuration*, std::string>> seen;  // (treatment, control asked)
    for (const auto& [treatment, control] : spec.comparisons)
      for (const Configuration& t : configs) {
        if (!selects(t, treatment)) continue;
        for (const auto& assign : assignments(control)) {
          // A control with the treatment's own values is the treatment: no comparison.
          if (std::all_of(assign.begin(), assign.end(), [&](const auto& kv) {
                const auto v = setting_of(t, kv.first);
                return v && same_value(*v, kv.second);
              }))
            continue;
          const Configuration* c = find_control(t, assign, configs, keys);
          std::string asked;
          for (const auto& [k, v] : assign) asked += k + "=" + v + " ";
          // The same pair asked twice (overlapping comparisons) is one row.
          if (!seen.emplace(&t, c ? c->label : asked).second) continue;
          if (c) {
            h.rows.push_back(compare(t, *c, file.baseline_band));
          } else {  // planned but not run: a row that says so, outside Holm's m
            ComparisonRow row;
            row.treatment = &t;
            row.asked = assign;
            row.difference = row.effect = row.control_metric = MeanCI{0, kNaN, kNaN, kNaN};
            h.rows.push_back(std::move(row));
          }
        }
      }
    std::vector<double> p;
    for (const ComparisonRow& r : h.rows) p.push_back(r.p);
    const std::vector<double> adjusted = holm_adjust(p);
    for (size_t i = 0; i < h.rows.size(); ++i) h.rows[i].p_holm = adjusted[i];
    out.push_back(std::move(h));
  }
  return out;
}

std::string hypotheses_markdown(const HypothesesFile& file,
                                const std::vector<HypothesisResult>& results,
                                const std::vector<std::string>& keys,
                                const std::vector<std::string>& group_names,
                                bool higher_is_better) {
  std::string md =
      "## Hypotheses\n\n"
      "Each hypothesis is a family of comparisons, each paired by seed: the mean difference "
      "(treatment − control) with its 95% t interval, the standardised effect d_z (mean over "
      "standard deviation of the paired differences) with its approximate 95% interval, the "
      "two-sided paired t-test's p and the same p corrected by Holm–Bonferroni over the "
      "family. *Detectable* is the difference these pairs would detect with 80% power at "
      "α = 0.05 (before the correction), given the observed spread of the paired "
      "differences: a smaller true difference can hide in a *not resolved* row. *Pairs for ½ "
      "sd* is how many seeds would detect half the control's seed-to-seed standard deviation "
      "(the design's aim) at that spread. A claim *holds* "
      "for a row when the corrected p is below 0.05 and the "
      "difference points the claimed way; *reversed* when it points the other way.";
  if (file.baseline_band)
    md += fmt::format(
        " A control whose mean lies outside [{:g}, {:g}] (near the floor or the ceiling, "
        "where no difference can show) is marked ⚠.",
        file.baseline_band->first, file.baseline_band->second);
  md += "\n\n";
  if (!file.note.empty()) md += "*From the design:* " + file.note + "\n\n";
  for (const HypothesisResult& h : results) {
    md += fmt::format("### {}: {}\n\n", h.spec->id, markdown_cell(h.spec->claim));
    if (h.rows.empty()) {
      md += "No configuration of this sweep matches the treatment.\n\n";
      continue;
    }
    const std::vector<std::string> shown = distinguishing(h, keys);
    const long planned = long(h.rows.size());
    const long testable = std::count_if(h.rows.begin(), h.rows.end(), tested);
    if (testable < planned)
      md += fmt::format(
          "Holm's correction is over the {} rows with a test, of {} planned: the others "
          "lack their control, a second common seed, or any spread between seeds.\n\n",
          testable, planned);
    md +=
        "| treatment | control | pairs | control mean | difference | 95% CI | d_z [95% CI] | "
        "detectable | pairs for ½ sd | p | p (Holm) | verdict |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const ComparisonRow& r : h.rows)
      md += fmt::format(
          "| {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
          markdown_cell(short_label(*r.treatment, shown)), markdown_cell(control_label(r, keys)),
          r.pairs, std::isnan(r.control_metric.mean) ? "–" : num(r.control_metric.mean),
          r.control_in_band ? "" : " ⚠", signed_num(r.difference.mean), interval(r.difference),
          std::isnan(r.effect.mean) ? std::string("–")
                                    : signed_num(r.effect.mean, 2) + " " + interval(r.effect, 2),
          std::isnan(r.detectable) ? "–" : "±" + num(r.detectable),
          r.pairs_for_half_sd ? std::to_string(r.pairs_for_half_sd) : "–", p_text(r.p),
          p_text(r.p_holm), verdict_text(verdict(r, higher_is_better)));
    const bool grouped = std::any_of(h.rows.begin(), h.rows.end(), [&](const ComparisonRow& r) {
      return !r.group_difference.empty();
    });
    if (grouped && !group_names.empty()) {
      md +=
          "\nWhere the difference lies: per query group, the mean paired difference and its "
          "95% interval.\n\n| treatment | control |";
      for (const std::string& g : group_names) md += fmt::format(" {} |", markdown_cell(g));
      md += "\n|---|---|";
      for (size_t g = 0; g < group_names.size(); ++g) md += "---|";
      md += "\n";
      for (const ComparisonRow& r : h.rows) {
        md += fmt::format("| {} | {} |", markdown_cell(short_label(*r.treatment, shown)),
                          markdown_cell(control_label(r, keys)));
        for (const std::string& g : group_names) {
          const auto it = std::find_if(r.group_difference.begin(), r.group_difference.end(),
                                       [&](const auto& nd) { return nd.first == g; });
          md += it == r.group_difference.end()
                    ? std::string(" |")
                    : fmt::format(" {} {} |", signed_num(it->second.mean, 3),
                                  interval(it->second, 3));
        }
        md += "\n";
      }
    }
    md += "\n";
  }
  return md;
}

std::string findings_paragraph(const HypothesesFile& file,
                               const std::vector<HypothesisResult>& results,
                               const std::vector<std::string>& keys, bool higher_is_better) {
  std::string text;
  for (const HypothesisResult& h : results) {
    if (!text.empty()) text += ' ';
    text += fmt::format("**{}** ({}):", h.spec->id, h.spec->claim);
    if (h.rows.empty()) {
      text += " not tested (no configuration of this sweep matches the treatment).";
      continue;
    }
    const std::vector<std::string> shown = distinguishing(h, keys);
    std::vector<std::string> held, reversed;
    double lo = INFINITY, hi = -INFINITY;
    int unresolved = 0, untested = 0;
    for (const ComparisonRow& r : h.rows) {
      const std::string what = fmt::format(
          "{} vs {} ({} {}, p_Holm {})", short_label(*r.treatment, shown), control_label(r, keys),
          signed_num(r.difference.mean), interval(r.difference), p_text(r.p_holm));
      switch (verdict(r, higher_is_better)) {
        case Verdict::holds:
          held.push_back(what);
          break;
        case Verdict::reversed:
          reversed.push_back(what);
          break;
        case Verdict::unresolved:
          ++unresolved;
          lo = std::min(lo, r.difference.mean);
          hi = std::max(hi, r.difference.mean);
          break;
        case Verdict::untested:
          ++untested;
          break;
      }
    }
    if (!held.empty()) text += fmt::format(" holds for {}", fmt::join(held, "; "));
    if (!reversed.empty())
      text += fmt::format("{} reversed for {}", held.empty() ? "" : ";", fmt::join(reversed, "; "));
    if (unresolved > 0)
      text += fmt::format(
          "{} not resolved in {} of {} comparisons ({})",
          held.empty() && reversed.empty() ? "" : ";", unresolved, h.rows.size(),
          lo == hi ? fmt::format("a mean difference of {}", signed_num(lo))
                   : fmt::format("mean differences {} to {}", signed_num(lo), signed_num(hi)));
    if (untested > 0)
      text += fmt::format(
          "{} {} of {} planned comparisons have no test yet (control not run, "
          "or fewer than two common seeds)",
          held.empty() && reversed.empty() && unresolved == 0 ? "" : ";", untested, h.rows.size());
    text += '.';
    if (file.baseline_band) {
      std::set<std::string> outside;
      for (const ComparisonRow& r : h.rows)
        if (r.control && !r.control_in_band)
          outside.insert(
              fmt::format("{} ({})", control_in_full(r, shown, keys), num(r.control_metric.mean)));
      if (!outside.empty())
        text += fmt::format(" Controls outside [{:g}, {:g}]: {}.", file.baseline_band->first,
                            file.baseline_band->second, fmt::join(outside, ", "));
    }
  }
  return text;
}

}  // namespace mtp::exp::reporting
