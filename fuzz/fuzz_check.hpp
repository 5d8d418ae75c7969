// Shared by the fuzz targets: a violated property is a crash, with a message
// that says which one (libFuzzer then saves the input as crash-<sha1>).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(cond, what)                                                                \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "%s:%d: property violated: %s\n  %s\n", __FILE__, __LINE__, #cond, \
                   std::string_view(what).data());                                            \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)
