#include "alerts/alert_engine.hpp"

#include <algorithm>
#include <set>

namespace wacht::alerts {

struct AlertEngine::Node {
  EngineCheck cfg;
  CheckState state;
  std::string summary;
  bool has_result = false;
  State last_result = State::kOk;
  uint64_t last_seq = 0;
  bool firing = false;
  State notified_state = State::kOk;
  bool flapping_notified = false;
  // Non-zero: a hard problem waits for parent results newer than this sequence.
  uint64_t confirm_after = 0;
  // A parent recovered: wait for this check's own next result.
  bool awaiting_fresh = false;
  std::vector<Node*> parents;
  std::vector<Node*> children;
};

AlertEngine::AlertEngine() = default;
AlertEngine::~AlertEngine() = default;

void AlertEngine::configure(std::vector<EngineCheck> checks) {
  std::map<std::string, std::unique_ptr<Node>, std::less<>> next;
  for (auto& c : checks) {
    auto it = nodes_.find(c.id);
    std::unique_ptr<Node> n = it != nodes_.end() ? std::move(it->second) : std::make_unique<Node>();
    n->state.set_config(c.state);
    n->cfg = std::move(c);
    n->parents.clear();
    n->children.clear();
    std::string id = n->cfg.id;
    next.emplace(std::move(id), std::move(n));
  }
  nodes_ = std::move(next);
  for (auto& [id, n] : nodes_) {
    for (const auto& p : n->cfg.depends_on) {
      auto it = nodes_.find(p);
      if (it == nodes_.end()) continue;  // the config loader rejects unknown parents
      n->parents.push_back(it->second.get());
      it->second->children.push_back(n.get());
    }
  }
}

bool AlertEngine::down(const Node& n, int depth) const {
  if (n.has_result && n.last_result != State::kOk) return true;
  // A parent cut off by its own parent counts as down; cycles are rejected
  // by the config loader, the depth bound only guards against a bug.
  if (depth > 64 || n.parents.empty()) return false;
  bool all = true, any = false;
  for (const Node* p : n.parents) {
    bool d = down(*p, depth + 1);
    all = all && d;
    any = any || d;
  }
  return n.cfg.depends_all ? all : any;
}

bool AlertEngine::blocked(const Node& n) const {
  if (n.parents.empty()) return false;
  bool all = true, any = false;
  for (const Node* p : n.parents) {
    bool d = down(*p);
    all = all && d;
    any = any || d;
  }
  return n.cfg.depends_all ? all : any;
}

void AlertEngine::evaluate(Node& n, Effects& fx) {
  const bool problem = n.state.hard_state() != State::kOk;
  if (!problem) {
    n.confirm_after = 0;
    if (n.firing && !n.state.flapping()) {
      n.firing = false;
      fx.events.push_back({AlertEvent::Kind::kResolved, n.cfg.id});
    }
    return;
  }
  // Notify only what the latest result still shows: a check recovering under
  // recover_after, or one that is flapping, sends nothing new.
  if (n.last_result == State::kOk || n.state.flapping()) return;
  if (n.firing && n.notified_state == n.state.hard_state()) return;
  if (blocked(n) || n.awaiting_fresh) return;
  if (!n.parents.empty() && !n.firing) {
    if (n.confirm_after == 0) {
      n.confirm_after = seq_;
      for (Node* p : n.parents) fx.run_now.push_back(p->cfg.id);
      return;
    }
    for (const Node* p : n.parents)
      if (p->last_seq <= n.confirm_after) return;  // still waiting for this parent
  }
  n.confirm_after = 0;
  n.firing = true;
  n.notified_state = n.state.hard_state();
  fx.events.push_back({AlertEvent::Kind::kFiring, n.cfg.id});
}

AlertEngine::Effects AlertEngine::observe(const std::string& id, State graded, std::string summary,
                                          TimePoint now) {
  Effects fx;
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return fx;
  Node& n = *it->second;
  const bool was_down = down(n);
  n.has_result = true;
  n.last_result = graded;
  n.last_seq = ++seq_;
  n.summary = std::move(summary);
  n.awaiting_fresh = false;
  Transition tr = n.state.observe(graded, now);

  if (tr.flapping_started && !n.flapping_notified) {
    n.flapping_notified = true;
    fx.events.push_back({AlertEvent::Kind::kFlappingStarted, id});
  }
  if (tr.flapping_stopped && n.flapping_notified) {
    n.flapping_notified = false;
    fx.events.push_back({AlertEvent::Kind::kFlappingStopped, id});
  }
  evaluate(n, fx);

  // Children waiting for this parent's fresh result, or freed by its recovery.
  const bool is_down = down(n);
  std::vector<Node*> stack(n.children.begin(), n.children.end());
  std::set<Node*> seen;
  while (!stack.empty()) {
    Node* c = stack.back();
    stack.pop_back();
    if (!seen.insert(c).second) continue;
    if (was_down && !is_down && c->has_result && c->last_result != State::kOk) {
      // Its failure may have been the parent's: look again before saying anything.
      // This parent's recovery result is the fresh look at it; any other
      // parent is checked again too.
      c->awaiting_fresh = true;
      c->confirm_after = n.last_seq - 1;
      fx.run_now.push_back(c->cfg.id);
      for (Node* p : c->parents)
        if (p != &n && p->last_seq <= c->confirm_after) fx.run_now.push_back(p->cfg.id);
    } else if (c->confirm_after != 0 || !is_down) {
      evaluate(*c, fx);
    }
    // A grandchild's view changes with its parent's: walk down while blocked.
    if (was_down != is_down) stack.insert(stack.end(), c->children.begin(), c->children.end());
  }
  return fx;
}

std::optional<AlertEngine::View> AlertEngine::view(const std::string& id) const {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return std::nullopt;
  const Node& n = *it->second;
  return View{&n.cfg,
              n.last_result,
              n.state.hard_state(),
              n.state.state_type(),
              n.has_result,
              n.state.flapping(),
              blocked(n),
              n.firing,
              n.notified_state,
              n.state.last_hard_change(),
              n.summary,
              n.state.attempt(),
              n.state.next_interval()};
}

std::vector<std::string> AlertEngine::ids() const {
  std::vector<std::string> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

std::vector<std::string> AlertEngine::affected_children(const std::string& id) const {
  std::vector<std::string> out;
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return out;
  std::vector<const Node*> stack(it->second->children.begin(), it->second->children.end());
  std::set<const Node*> seen;
  while (!stack.empty()) {
    const Node* c = stack.back();
    stack.pop_back();
    if (!seen.insert(c).second) continue;
    // Cut off by this outage (whether or not its own probe has failed yet), or failing.
    if (blocked(*c) || (c->has_result && c->last_result != State::kOk)) out.push_back(c->cfg.id);
    stack.insert(stack.end(), c->children.begin(), c->children.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::map<std::string, AlertEngine::Saved> AlertEngine::save() const {
  std::map<std::string, Saved> out;
  for (const auto& [id, n] : nodes_) {
    out[id] = Saved{n->state.save(), n->summary,        n->has_result,       n->last_result,
                    n->firing,       n->notified_state, n->flapping_notified};
  }
  return out;
}

void AlertEngine::restore(const std::map<std::string, Saved>& saved) {
  for (const auto& [id, s] : saved) {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) continue;
    Node& n = *it->second;
    n.state.restore(s.state);
    n.summary = s.summary;
    n.has_result = s.has_result;
    n.last_result = s.last_result;
    n.firing = s.firing;
    n.notified_state = s.notified_state;
    n.flapping_notified = s.flapping_notified;
  }
}

}  // namespace wacht::alerts
