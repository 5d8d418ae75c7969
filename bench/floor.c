/* The floor under a probe: what the kernel and a minimal client spend on one
 * fresh TCP connection, one HTTP GET or one ICMP echo, without any monitoring
 * logic. Blocking sockets, one probe at a time; paced at RATE probes per second
 * (0: as fast as possible), round-robin over the targets, for at most SECONDS
 * and at most 1,000,000 probes; RATE/B sends them in bursts of B (as a
 * scheduler waking every B/RATE seconds would). Prints the CPU of this process per probe
 * (getrusage), which on loopback also contains much of the server's kernel work
 * (the receiving side's softirq runs in the sender's context).
 *
 *   cc -O2 -o floor bench/floor.c
 *   ./floor tcp  RATE SECONDS 127.0.0.1:8080 [127.0.0.2:8080 ...]
 *   ./floor http RATE SECONDS 127.0.0.1:8080/t/1 [...]
 *   ./floor icmp RATE SECONDS 127.1.0.1 [...]      (needs a raw socket: root)
 *
 * Output, one line: "mode=tcp probes=N ok=N wall_s=… cpu_ms_per_probe=…".
 * Loopback only: every target must be in 127.0.0.0/8.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct target {
  struct sockaddr_in addr;
  char path[256];
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static int parse(const char* spec, int want_port, struct target* t) {
  char host[64];
  const char* colon = strchr(spec, ':');
  const char* slash = strchr(spec, '/');
  size_t hl = colon ? (size_t)(colon - spec) : slash ? (size_t)(slash - spec) : strlen(spec);
  if (hl >= sizeof host) return -1;
  memcpy(host, spec, hl);
  host[hl] = 0;
  memset(t, 0, sizeof *t);
  t->addr.sin_family = AF_INET;
  if (inet_pton(AF_INET, host, &t->addr.sin_addr) != 1) return -1;
  if ((ntohl(t->addr.sin_addr.s_addr) >> 24) != 127) return -1; /* loopback only */
  if (want_port) {
    if (!colon) return -1;
    t->addr.sin_port = htons((uint16_t)atoi(colon + 1));
  }
  snprintf(t->path, sizeof t->path, "%s", slash ? slash : "/");
  return 0;
}

static int tcp_probe(const struct target* t, int http) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int ok = connect(fd, (const struct sockaddr*)&t->addr, sizeof t->addr) == 0;
  if (ok && http) {
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: floor\r\nAccept: */*\r\n\r\n",
                     t->path, inet_ntoa(t->addr.sin_addr), ntohs(t->addr.sin_port));
    ok = write(fd, req, (size_t)n) == n;
    char buf[4096];
    ssize_t r = 0, total = 0;
    while (ok && (r = read(fd, buf, sizeof buf)) > 0) total += r; /* until the server closes */
    ok = ok && total > 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0;
  }
  close(fd);
  return ok;
}

static uint16_t checksum(const void* data, size_t len) {
  const uint8_t* p = data;
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (len % 2) sum += (uint32_t)p[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static int icmp_probe(int fd, const struct target* t, uint16_t id, uint16_t seq) {
  uint8_t pkt[64] = {0};
  pkt[0] = ICMP_ECHO;
  pkt[4] = (uint8_t)(id >> 8);
  pkt[5] = (uint8_t)id;
  pkt[6] = (uint8_t)(seq >> 8);
  pkt[7] = (uint8_t)seq;
  uint16_t c = checksum(pkt, sizeof pkt);
  pkt[2] = (uint8_t)(c >> 8);
  pkt[3] = (uint8_t)c;
  if (sendto(fd, pkt, sizeof pkt, 0, (const struct sockaddr*)&t->addr, sizeof t->addr) < 0)
    return 0;
  for (;;) { /* the reply, skipping other pingers' */
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) return 0;
    uint8_t buf[1500];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 28) continue;
    size_t ihl = (size_t)(buf[0] & 15) * 4;
    const uint8_t* r = buf + ihl;
    if (r[0] == ICMP_ECHOREPLY && (r[4] << 8 | r[5]) == id && (r[6] << 8 | r[7]) == seq) return 1;
  }
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s tcp|http|icmp RATE[/BURST] SECONDS TARGET...\n", argv[0]);
    return 2;
  }
  const char* mode = argv[1];
  int http = strcmp(mode, "http") == 0, icmp = strcmp(mode, "icmp") == 0;
  double rate = atof(argv[2]), seconds = atof(argv[3]);
  const char* slash = strchr(argv[2], '/');
  long burst = slash ? atol(slash + 1) : 1;
  if (burst < 1 || burst > 1000) burst = 1;
  if (seconds <= 0 || seconds > 600) seconds = 10;
  int n = argc - 4;
  struct target* ts = calloc((size_t)n, sizeof *ts);
  for (int i = 0; i < n; ++i) {
    if (parse(argv[4 + i], !icmp, &ts[i]) != 0) {
      fprintf(stderr, "bad or non-loopback target %s\n", argv[4 + i]);
      return 2;
    }
  }
  int ifd = -1;
  if (icmp) {
    ifd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (ifd < 0) {
      perror("raw socket");
      return 1;
    }
  }
  double t0 = now_s(), c0 = cpu_s();
  long probes = 0, ok = 0;
  uint16_t id = (uint16_t)getpid();
  while (probes < 1000000) {
    double t = now_s();
    if (t - t0 >= seconds) break;
    if (rate > 0 && probes % burst == 0) { /* pace: burst k starts at t0 + k * burst / rate */
      double due = t0 + probes / rate;
      if (due > t) {
        struct timespec d = {(time_t)(due - t), (long)((due - t - (time_t)(due - t)) * 1e9)};
        nanosleep(&d, NULL);
      }
    }
    const struct target* tg = &ts[probes % n];
    ok += icmp ? icmp_probe(ifd, tg, id, (uint16_t)probes) : tcp_probe(tg, http);
    ++probes;
  }
  double wall = now_s() - t0, cpu = cpu_s() - c0;
  printf("mode=%s probes=%ld ok=%ld wall_s=%.2f cpu_ms_per_probe=%.4f\n", mode, probes, ok, wall,
         probes ? cpu * 1e3 / probes : 0.0);
  return 0;
}
