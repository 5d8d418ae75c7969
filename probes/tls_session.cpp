#include "probes/tls_session.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <cstdlib>
#include <new>
#include <system_error>

namespace wacht::probes {

namespace {

// The reason of one queued OpenSSL error. System errors carry errno, for
// which OpenSSL 3 has no reason string of its own.
std::string reason(unsigned long e) {
  if (ERR_SYSTEM_ERROR(e)) return std::system_category().message(ERR_GET_REASON(e));
  const char* r = ERR_reason_error_string(e);
  return r ? r : "unknown error";
}

// The earliest queued error is the root cause ("No such file or directory"
// rather than "system lib"); the queue is emptied for the next operation.
std::string take_error(const char* fallback) {
  unsigned long e = ERR_get_error();
  std::string out = e ? reason(e) : fallback;
  ERR_clear_error();
  return out;
}

// Refuses to prompt for a passphrase: the daemon has no terminal, and
// OpenSSL's default callback would read one from it.
int no_passphrase(char*, int, int, void*) noexcept { return -1; }

}  // namespace

TlsContext::TlsContext(bool verify) : ctx_(SSL_CTX_new(TLS_client_method())) {
  if (!ctx_) throw std::bad_alloc();
  SSL_CTX_set_verify(ctx_, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_default_passwd_cb(ctx_, &no_passphrase);
  tls::record_expiry(ctx_);
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

bool TlsContext::trust_system_cas(std::string* error) {
  // Only the hashed directory, searched per issuer when a handshake needs it.
  // The default paths would also parse the whole CA bundle into every context
  // up front: about 0.9 MB per TLS check.
  const char* dir = std::getenv(X509_get_default_cert_dir_env());
  if (!dir) dir = X509_get_default_cert_dir();
  ERR_clear_error();
  if (SSL_CTX_load_verify_dir(ctx_, dir) == 1) return true;
  *error =
      std::string("cannot use the system CA directory '") + dir + "': " + take_error("load failed");
  return false;
}

bool TlsContext::trust_ca_file(const std::string& path, std::string* error) {
  ERR_clear_error();
  if (SSL_CTX_load_verify_file(ctx_, path.c_str()) == 1) return true;
  *error = "cannot load CA file '" + path + "': " + take_error("load failed");
  return false;
}

bool TlsContext::use_client_cert(const std::string& cert_file, std::string* error) {
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()) == 1) return true;
  *error = "cannot load client certificate '" + cert_file + "': " + take_error("load failed");
  return false;
}

bool TlsContext::use_client_key(const std::string& key_file, std::string* error) {
  ERR_clear_error();
  if (SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) == 1) return true;
  unsigned long e = ERR_peek_error();
  if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
    *error = "client key '" + key_file + "' does not match the client certificate";
    ERR_clear_error();
  } else {
    *error = "cannot load client key '" + key_file + "': " + take_error("load failed");
  }
  return false;
}

TlsSession::TlsSession(const TlsContext& ctx, const std::string& server_name)
    : ssl_(SSL_new(ctx.get())), in_(BIO_new(BIO_s_mem())), out_(BIO_new(BIO_s_mem())) {
  if (!ssl_ || !in_ || !out_) {
    BIO_free(in_);
    BIO_free(out_);
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_connect_state(ssl_);
  tls::attach(ssl_, &expiry_);
  if (!server_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    // SNI carries DNS names only (RFC 6066), so an IP literal is only checked.
    if (X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str()) != 1) {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, server_name.data(), server_name.size());
      SSL_set_tlsext_host_name(ssl_, server_name.c_str());
    }
    ERR_clear_error();
  }
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

void TlsSession::receive(std::string_view ciphertext) {
  // A memory BIO grows as needed; it only fails when out of memory.
  if (!ciphertext.empty() &&
      BIO_write(in_, ciphertext.data(), static_cast<int>(ciphertext.size())) <= 0)
    throw std::bad_alloc();
}

TlsSession::Status TlsSession::handshake() {
  if (status_ != Status::kHandshaking) return status_;
  // SSL_get_error reads the thread's error queue, which other users of
  // OpenSSL on this thread (curl) may have left entries in.
  ERR_clear_error();
  int ret = SSL_do_handshake(ssl_);
  if (ret == 1) return status_ = Status::kEstablished;
  if (SSL_get_error(ssl_, ret) == SSL_ERROR_WANT_READ) return status_;
  return fail(ret);
}

std::string TlsSession::take_output() {
  std::string out(BIO_ctrl_pending(out_), '\0');
  if (!out.empty()) BIO_read(out_, out.data(), static_cast<int>(out.size()));
  return out;
}

bool TlsSession::write(std::string_view plaintext) {
  if (status_ != Status::kEstablished) return false;
  if (plaintext.empty()) return true;
  ERR_clear_error();
  // Memory BIOs accept everything at once, so a write is never partial.
  int ret = SSL_write(ssl_, plaintext.data(), static_cast<int>(plaintext.size()));
  if (ret > 0) return true;
  fail(ret);
  return false;
}

TlsSession::Status TlsSession::read(std::string& out) {
  char buf[16 * 1024];
  while (status_ == Status::kEstablished) {
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) return status_ = Status::kClosed;
    return fail(n);
  }
  return status_;
}

void TlsSession::shutdown() {
  if (status_ != Status::kEstablished) return;
  ERR_clear_error();
  // Returns 0: close_notify is queued and the peer's is not awaited.
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

TlsSession::Status TlsSession::fail(int ret) {
  int err = SSL_get_error(ssl_, ret);
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK && (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER)) {
    error_ = X509_verify_cert_error_string(verify);
    ERR_clear_error();
  } else if (err == SSL_ERROR_SSL) {
    error_ = take_error("protocol error");
  } else {
    error_ = take_error("connection failed");
  }
  return status_ = Status::kFailed;
}

bool TlsSession::verified() const {
  return SSL_get0_peer_certificate(ssl_) != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK;
}

std::string TlsSession::verify_error() const {
  if (!SSL_get0_peer_certificate(ssl_)) return "no certificate";
  return X509_verify_cert_error_string(SSL_get_verify_result(ssl_));
}

std::string TlsSession::version() const {
  if (!SSL_is_init_finished(ssl_)) return {};
  switch (SSL_version(ssl_)) {
    case TLS1_3_VERSION: return "TLS 1.3";
    case TLS1_2_VERSION: return "TLS 1.2";
    case TLS1_1_VERSION: return "TLS 1.1";
    case TLS1_VERSION: return "TLS 1.0";
    default: return SSL_get_version(ssl_);
  }
}

}  // namespace wacht::probes
