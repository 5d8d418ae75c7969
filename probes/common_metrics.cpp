#include "probes/common_metrics.hpp"

namespace wacht::probes::metrics {

const MetricDef kDnsLookupTime{"probe_dns_lookup_time_seconds",
                               "Returns the time taken for probe dns lookup in seconds"};
const MetricDef kIpProtocol{"probe_ip_protocol",
                            "Specifies whether probe ip protocol is IP4 or IP6"};
const MetricDef kTlsVersion{"probe_tls_version_info",
                            "Returns the TLS version used or NaN when unknown", "version"};
const MetricDef kFailedDueToRegex{"probe_failed_due_to_regex",
                                  "Indicates if probe failed due to regex"};

}  // namespace wacht::probes::metrics
