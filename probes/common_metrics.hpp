#pragma once

#include "probes/probe.hpp"

// Families several probes report, defined once, with blackbox_exporter's
// names and help texts so dashboards built for it work unchanged.
namespace wacht::probes::metrics {

extern const MetricDef kDnsLookupTime;     // probe_dns_lookup_time_seconds
extern const MetricDef kIpProtocol;        // probe_ip_protocol
extern const MetricDef kTlsVersion;        // probe_tls_version_info{version}
extern const MetricDef kFailedDueToRegex;  // probe_failed_due_to_regex

}  // namespace wacht::probes::metrics
