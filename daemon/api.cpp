// wachtd's HTTP endpoints: metrics and health on civetweb's threads, the
// on-call API (alerts, acknowledgements, silences, who is on call) on the
// loop, where the alert state lives.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "app.hpp"
#include "oncall_report.hpp"
#include "version.hpp"

namespace wacht {

namespace {

using Request = exporters::HttpServer::Request;
using Response = exporters::HttpServer::Response;
using Route = exporters::HttpServer::Route;
using Runs = exporters::HttpServer::Runs;
using exporters::Access;
using json = nlohmann::ordered_json;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t to_ms(alerts::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Response html(int status, const std::string& title, const std::string& content) {
  Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = fmt::format(
      "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" "
      "content=\"noindex\"><title>{0}</title></head><body><h1>{0}</h1>{1}</body></html>\n",
      html_escape(title), content);
  return r;
}

// application/x-www-form-urlencoded, as the confirmation form posts it.
std::map<std::string, std::string> form_fields(const std::string& body) {
  Request r;
  r.query = body;
  std::map<std::string, std::string> out;
  for (auto& [k, v] : r.query_params()) out.emplace(std::move(k), std::move(v));
  return out;
}

// A JSON object body with string fields only; unknown fields are refused so a
// typo ("coment") is not silently dropped.
std::optional<std::map<std::string, std::string>> string_fields(
    const std::string& body, std::initializer_list<std::string_view> allowed, std::string* error) {
  json j = json::parse(body.empty() ? "{}" : body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "body must be a JSON object";
    return std::nullopt;
  }
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : j.items()) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      *error = fmt::format("{}: unknown field", k);
      return std::nullopt;
    }
    if (!v.is_string()) {
      *error = fmt::format("{}: must be a string", k);
      return std::nullopt;
    }
    out[k] = v.get<std::string>();
  }
  return out;
}

}  // namespace

std::vector<Route> App::api_routes() {
  auto* metrics = metrics_.get();
  std::vector<Route> routes;
  auto worker = [&](std::string path, std::function<Response()> f, Access access = Access::open) {
    routes.push_back({"GET", std::move(path), [f = std::move(f)](const Request&) { return f(); },
                      Runs::worker, access, false});
  };
  worker("/metrics", [metrics] {
    return Response{200, "text/plain; version=0.0.4; charset=utf-8", metrics->serialize(), {}};
  });
  worker("/-/healthy", [] { return Response{200, "text/plain", "OK\n", {}}; });
  worker("/-/ready", [this] {
    bool ready = ready_.load();
    return Response{ready ? 200 : 503, "text/plain", ready ? "OK\n" : "starting\n", {}};
  });
  worker("/", [] {
    return Response{200,
                    "text/html; charset=utf-8",
                    "<html><head><title>wachtd</title></head><body><h1>wachtd</h1>"
                    "<p><a href=\"/metrics\">Metrics</a> · <a href=\"/api/v1/alerts\">Alerts</a>"
                    " · <a href=\"/api/v1/silences\">Silences</a></p></body></html>\n",
                    {}};
  });

  auto loop = [&](std::string method, std::string pattern, Access access, bool json_body,
                  std::function<Response(const Request&)> f) {
    routes.push_back(
        {std::move(method), std::move(pattern), std::move(f), Runs::loop, access, json_body});
  };

  // Firing and pending alerts with their acknowledgement and silence.
  loop("GET", "/api/v1/alerts", Access::read, false, [this](const Request&) {
    json out = json::array();
    int64_t now = now_ms();
    for (const auto& id : engine_.ids()) {
      auto v = engine_.view(id);
      if (!v || (v->hard_state == probes::State::kOk && !v->firing)) continue;
      alerts::Labels labels = alert_labels(id);
      std::string silenced_by;
      silences_.silenced(labels, now, &silenced_by);
      json a{{"check", id},
             {"tenant", v->check->tenant},
             {"target", v->check->target},
             {"state", probes::state_name(v->hard_state)},
             {"status", v->firing        ? "firing"
                        : v->unreachable ? "unreachable"
                                         : "pending"},
             {"since", alerts::format_rfc3339(to_ms(v->since))},
             {"summary", v->summary},
             {"labels", labels}};
      if (auto ack = acks_.find(id); ack != acks_.end())
        a["acknowledged"] = {{"by", ack->second.by},
                             {"comment", ack->second.comment},
                             {"at", alerts::format_rfc3339(ack->second.at_ms)}};
      if (!silenced_by.empty())
        a["silenced_by"] = silenced_by;
      else if (in_maintenance(labels, now / 1000))
        a["silenced_by"] = "maintenance";
      out.push_back(std::move(a));
    }
    return Response::json(200, out.dump());
  });

  auto ack_error = [](AckError e, const std::string& id) {
    switch (e) {
      case AckError::kUnknownCheck: return Response::error(404, "unknown check '" + id + "'");
      case AckError::kNotFiring:
        return Response::error(409, "check '" + id + "' has no firing alert to acknowledge");
      default: return Response::error(409, "the alert of this link is over");
    }
  };
  loop("POST", "/api/v1/alerts/{check}/ack", Access::write, true,
       [this, ack_error](const Request& req) {
         std::string error;
         auto fields = string_fields(req.body, {"comment"}, &error);
         if (!fields) return Response::error(400, error);
         const std::string& id = req.params.at("check");
         AckError e = acknowledge(id, req.principal, (*fields)["comment"], "api");
         if (e != AckError::kNone) return ack_error(e, id);
         return Response::json(200, json{{"check", id}, {"acknowledged_by", req.principal}}.dump());
       });
  loop("DELETE", "/api/v1/alerts/{check}/ack", Access::write, false, [this](const Request& req) {
    const std::string& id = req.params.at("check");
    if (acks_.erase(id) == 0) return Response::error(404, "check '" + id + "' is not acknowledged");
    spdlog::info("acknowledgement of {} withdrawn by {}", id, req.principal);
    state_dirty_ = true;
    router_->wake(alerts::Clock::now());
    arm_flush();
    return Response{204, "text/plain", "", {}};
  });

  // Acknowledgement links from emails. GET only shows a form, so a mail
  // scanner that fetches every link acknowledges nothing; the POST does it.
  // The signed token is the authorisation.
  auto verify = [this](const std::string& token, std::string* id, int64_t* since) {
    std::string error;
    auto payload = exporters::verify_token(ack_key_, token, now_ms() / 1000, &error);
    if (!payload)
      return error == "expired" ? std::string("This link has expired.")
                                : std::string("This link is not valid.");
    size_t nl = payload->find('\n');
    *id = payload->substr(0, nl);
    *since = std::stoll(payload->substr(nl + 1));
    return std::string();
  };
  loop("GET", "/ack", Access::open, false, [this, verify](const Request& req) {
    std::string id;
    int64_t since = 0;
    std::string token = req.query_param("t").value_or("");
    if (auto bad = verify(token, &id, &since); !bad.empty())
      return html(400, "wacht: acknowledgement", "<p>" + bad + "</p>");
    auto v = engine_.view(id);
    if (!v || !v->firing || to_ms(v->since) != since)
      return html(409, "wacht: acknowledgement", "<p>This alert is already over.</p>");
    std::string state =
        html_escape(fmt::format("{} {} since {}: {}", id, probes::state_name(v->hard_state),
                                alerts::format_rfc3339(to_ms(v->since)), v->summary));
    if (auto ack = acks_.find(id); ack != acks_.end())
      return html(200, "wacht: acknowledged",
                  "<p>" + state + "</p><p>Already acknowledged by " + html_escape(ack->second.by) +
                      ".</p>");
    return html(200, "wacht: acknowledge alert",
                "<p>" + state +
                    "</p><form method=\"post\" action=\"ack\"><input type=\"hidden\" name=\"t\" "
                    "value=\"" +
                    html_escape(token) +
                    "\"><p><label>Name <input name=\"name\" required></label></p><p><label>"
                    "Comment <input name=\"comment\" size=\"60\"></label></p><p><button "
                    "type=\"submit\">Acknowledge</button></p></form>");
  });
  loop("POST", "/ack", Access::open, false, [this, verify](const Request& req) {
    auto fields = form_fields(req.body);
    std::string id;
    int64_t since = 0;
    if (auto bad = verify(fields["t"], &id, &since); !bad.empty())
      return html(400, "wacht: acknowledgement", "<p>" + bad + "</p>");
    std::string name = fields["name"];
    if (name.empty() || name.size() > 100)
      return html(400, "wacht: acknowledgement", "<p>Please give your name.</p>");
    AckError e = acknowledge(id, name, fields["comment"].substr(0, 1000), "link", since);
    if (e != AckError::kNone)
      return html(409, "wacht: acknowledgement", "<p>This alert is already over.</p>");
    return html(200, "wacht: acknowledged",
                "<p>" + html_escape(id) + " is acknowledged by " + html_escape(name) +
                    ". Repeats and escalation stop until its state changes.</p>");
  });

  // Silences, shaped like Alertmanager's API v2.
  loop("GET", "/api/v1/silences", Access::read, false, [this](const Request&) {
    json out = json::array();
    int64_t now = now_ms();
    for (const auto& s : silences_.list(now)) out.push_back(alerts::to_json(s, now));
    return Response::json(200, out.dump());
  });
  loop("GET", "/api/v1/silences/{id}", Access::read, false, [this](const Request& req) {
    const auto* s = silences_.find(req.params.at("id"));
    if (!s) return Response::error(404, "silence " + req.params.at("id") + " not found");
    return Response::json(200, alerts::to_json(*s, now_ms()).dump());
  });
  loop("POST", "/api/v1/silences", Access::write, true, [this](const Request& req) {
    std::string error;
    auto s = alerts::parse_postable_silence(req.body, &error);
    if (!s) return Response::error(400, error);
    // The token says who; a body cannot speak for someone else.
    s->created_by = req.principal;
    bool update = !s->id.empty();
    if (update && !silences_.find(s->id))
      return Response::error(404, "silence " + s->id + " not found");
    auto id = silences_.add(std::move(*s), now_ms(), &error);
    if (!id) return Response::error(400, error);
    const auto* added = silences_.find(*id);
    std::vector<std::string> matchers;
    for (const auto& m : added->matchers) matchers.push_back(m.str());
    spdlog::info("silence {} {} by {} until {}: {} ({})", *id, update ? "updated" : "created",
                 req.principal, alerts::format_rfc3339(added->ends_at_ms),
                 fmt::join(matchers, ", "), added->comment);
    silences_changed();
    return Response::json(200, json{{"silenceID", *id}}.dump());
  });
  loop("DELETE", "/api/v1/silences/{id}", Access::write, false, [this](const Request& req) {
    const std::string& id = req.params.at("id");
    std::string error;
    if (!silences_.find(id)) return Response::error(404, "silence " + id + " not found");
    if (!silences_.expire(id, now_ms(), &error)) return Response::error(409, error);
    spdlog::info("silence {} expired by {}", id, req.principal);
    silences_changed();
    return Response{204, "text/plain", "", {}};
  });

  // Who is on call: for a tenant (where its alerts go) or a rotation.
  loop("GET", "/api/v1/oncall", Access::read, false, [this](const Request& req) {
    std::string error;
    auto at = req.query_param("at");
    int64_t t = now_ms() / 1000;
    if (at) {
      auto ms = alerts::parse_rfc3339(*at);
      if (!ms) return Response::error(400, "at: not an RFC 3339 time: \"" + *at + "\"");
      t = *ms / 1000;
    }
    auto report = oncall_report(*config_, req.query_param("tenant").value_or(""),
                                req.query_param("rotation").value_or(""), t, &error);
    if (!report) return Response::error(400, error);
    return Response::json(200, oncall_json(*report).dump());
  });
  return routes;
}

}  // namespace wacht
