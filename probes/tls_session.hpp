#pragma once

#include <string>
#include <string_view>

#include "probes/tls.hpp"

typedef struct bio_st BIO;

namespace wacht::probes {

// A client SSL_CTX configured once per check and shared by all of its runs:
// loading CAs and client keys is too costly to repeat per run. Loop thread only.
class TlsContext {
 public:
  // With `verify` false a handshake succeeds whatever the certificate; the
  // chain and name are still checked, and the outcome is reported by
  // TlsSession::verified().
  explicit TlsContext(bool verify);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Each returns false and sets `error` to an operator-facing reason.
  bool trust_system_cas(std::string* error);
  // Trusts only the CAs in `path` (PEM), not the system's.
  bool trust_ca_file(const std::string& path, std::string* error);
  // A client certificate chain (PEM), then its unencrypted key (PEM, may be
  // the same file), which is checked against the certificate loaded first.
  bool use_client_cert(const std::string& cert_file, std::string* error);
  bool use_client_key(const std::string& key_file, std::string* error);

  SSL_CTX* get() const { return ctx_; }

 private:
  SSL_CTX* ctx_;
};

// One TLS client connection over memory BIOs, independent of the transport:
// the owner feeds it the bytes it receives and sends the bytes it produces.
// So it can start on a stream that is already connected and has carried
// plaintext (STARTTLS). Loop thread only; not movable, since OpenSSL keeps
// pointers into it.
class TlsSession {
 public:
  enum class Status { kHandshaking, kEstablished, kClosed, kFailed };

  // `server_name` is checked against the certificate (a DNS name or an IP
  // literal) and sent as SNI if it is a DNS name; empty skips the name check.
  TlsSession(const TlsContext& ctx, const std::string& server_name);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Bytes received from the peer.
  void receive(std::string_view ciphertext);
  // Starts or continues the handshake as far as the bytes received allow.
  // Call it once to begin, then after each receive() while kHandshaking.
  Status handshake();
  // Bytes to send to the peer now (handshake records, data, alerts).
  std::string take_output();

  // Once established: encrypts `plaintext` into the output; false on failure.
  bool write(std::string_view plaintext);
  // Appends the plaintext decrypted so far to `out`. kClosed once the peer
  // sent close_notify, kFailed on a protocol error.
  Status read(std::string& out);
  // Queues close_notify into the output.
  void shutdown();

  Status status() const { return status_; }
  // Why the session failed: "certificate has expired", "hostname mismatch", ...
  const std::string& error() const { return error_; }
  // Whether chain and name verification passed; also meaningful when the
  // context does not enforce verification.
  bool verified() const;
  std::string verify_error() const;
  // "TLS 1.3" (blackbox_exporter's spelling), empty before the handshake.
  std::string version() const;
  // Expiry of the certificates the server presented, also if verification failed.
  const tls::ChainExpiry& expiry() const { return expiry_; }

 private:
  Status fail(int ret);

  SSL* ssl_;
  BIO* in_;   // owned by ssl_
  BIO* out_;  // owned by ssl_
  tls::ChainExpiry expiry_;
  Status status_ = Status::kHandshaking;
  std::string error_;
};

}  // namespace wacht::probes
