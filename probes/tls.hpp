#pragma once

#include <limits>
#include <map>

#include "probes/probe.hpp"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct x509_st X509;

namespace wacht::probes::tls {

// Expiry dates of the certificates a server presented, recorded while OpenSSL
// verifies the chain: also when verification fails, so an expired or untrusted
// certificate still reports when it expires.
struct ChainExpiry {
  std::map<int, double> not_after_by_depth;  // depth 0 is the leaf; unix seconds

  bool empty() const { return not_after_by_depth.empty(); }
  double leaf() const;      // 0 if not seen
  double earliest() const;  // soonest expiry in the chain
  void clear() { not_after_by_depth.clear(); }
  // Adds probe_ssl_earliest_cert_expiry, probe_ssl_last_chain_expiry_timestamp_seconds
  // and wacht_ssl_leaf_cert_expiry_timestamp_seconds if anything was recorded.
  void add_samples(ProbeResult& result) const;
};

// Makes every handshake on `ctx` record into the ChainExpiry attached to the
// SSL (see attach) or, failing that, to the SSL_CTX itself. Keeps the verify
// mode already set on `ctx`.
void record_expiry(SSL_CTX* ctx);
void attach(SSL* ssl, ChainExpiry* out);
void attach(SSL_CTX* ctx, ChainExpiry* out);

// notAfter of `cert` as unix seconds, or 0 if it cannot be read.
double not_after(X509* cert);

extern const MetricDef kEarliestCertExpiry;
extern const MetricDef kLastChainExpiry;
extern const MetricDef kLeafCertExpiry;

}  // namespace wacht::probes::tls
