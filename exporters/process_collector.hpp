#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace wacht::exporters {

// The standard process_* metrics (as Go and Python clients export them), read
// from /proc/self at scrape time.
class ProcessCollector : public prometheus::Collectable {
 public:
  ProcessCollector();
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  double start_time_;
};

}  // namespace wacht::exporters
