#include "probes/tls.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <algorithm>
#include <ctime>

namespace wacht::probes::tls {

const MetricDef kEarliestCertExpiry{
    "probe_ssl_earliest_cert_expiry",
    "Returns earliest SSL cert expiry date as unix time in seconds."};
const MetricDef kLastChainExpiry{"probe_ssl_last_chain_expiry_timestamp_seconds",
                                 "Returns last SSL chain expiry in timestamp seconds."};
const MetricDef kLeafCertExpiry{
    "wacht_ssl_leaf_cert_expiry_timestamp_seconds",
    "Expiry of the server's own (leaf) certificate as unix time in seconds."};

double ChainExpiry::leaf() const {
  auto it = not_after_by_depth.find(0);
  return it == not_after_by_depth.end() ? 0 : it->second;
}

double ChainExpiry::earliest() const {
  double min = 0;
  for (const auto& [depth, t] : not_after_by_depth)
    if (t > 0 && (min == 0 || t < min)) min = t;
  return min;
}

void ChainExpiry::add_samples(ProbeResult& result) const {
  if (empty()) return;
  result.add(kEarliestCertExpiry, earliest());
  // One verified chain per connection here, so the last chain to expire is this one.
  result.add(kLastChainExpiry, earliest());
  if (leaf() > 0) result.add(kLeafCertExpiry, leaf());
}

double not_after(X509* cert) {
  const ASN1_TIME* t = X509_get0_notAfter(cert);
  struct tm tm {};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<double>(timegm(&tm));
}

namespace {

int ssl_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int ctx_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int verify_callback(int preverify_ok, X509_STORE_CTX* store) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (!ssl) return preverify_ok;
  auto* out = static_cast<ChainExpiry*>(SSL_get_ex_data(ssl, ssl_index()));
  if (!out) out = static_cast<ChainExpiry*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index()));
  if (out && out->empty()) {
    // The certificates the server sent, leaf first: recorded up front because a
    // failed verification stops before reaching the leaf.
    if (STACK_OF(X509)* sent = X509_STORE_CTX_get0_untrusted(store)) {
      for (int i = 0; i < sk_X509_num(sent); ++i)
        out->not_after_by_depth[i] = not_after(sk_X509_value(sent, i));
    }
  }
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (out && cert) out->not_after_by_depth[X509_STORE_CTX_get_error_depth(store)] = not_after(cert);
  // Only observe: the verify mode set by the caller decides the outcome.
  return preverify_ok;
}

}  // namespace

void record_expiry(SSL_CTX* ctx) {
  SSL_CTX_set_verify(ctx, SSL_CTX_get_verify_mode(ctx), &verify_callback);
}

void attach(SSL* ssl, ChainExpiry* out) { SSL_set_ex_data(ssl, ssl_index(), out); }
void attach(SSL_CTX* ctx, ChainExpiry* out) { SSL_CTX_set_ex_data(ctx, ctx_index(), out); }

}  // namespace wacht::probes::tls
