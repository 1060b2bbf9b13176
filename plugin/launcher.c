// The file a container runtime execs as the int-host-reporter CNI plugin. Statically linked, so
// it runs on any x86-64 Linux kernel whatever the host has (or lacks) in the way of libc.
//
// It starts the runtime shipped beside it, through that runtime's own dynamic loader:
//   <dir>/int-host-reporter.d/current/lib/ld-linux-x86-64.so.2 --inhibit-cache
//       --library-path <R>/lib --argv0 <argv[0]> <R>/node <R>/plugin.cjs <argv[1..]>
// where R is `current` resolved once, so a concurrent upgrade cannot mix two builds in one call.
//
// If that cannot start, no code of ours that could fail open will run: this file is the last
// place that can answer the runtime. It prints a CNI error (exit 1), except for DEL, which must
// always succeed (exit 0, nothing printed).
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUNTIME_DIR "int-host-reporter.d"
#define LOADER "lib/ld-linux-x86-64.so.2"

extern char **environ;

static void put(const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(1, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

// A JSON string body: quotes, backslashes and control bytes escaped (paths are arbitrary bytes).
static void put_json_text(const char *s) {
  static const char hex[] = "0123456789abcdef";
  char buf[8];
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[0] = '\\', buf[1] = (char)c, buf[2] = 0;
    } else if (c < 0x20) {
      memcpy(buf, "\\u00", 4);
      buf[4] = hex[c >> 4], buf[5] = hex[c & 15], buf[6] = 0;
    } else {
      buf[0] = (char)c, buf[1] = 0;
    }
    put(buf);
  }
}

static int fail(const char *path, int err) {
  const char *cmd = getenv("CNI_COMMAND");
  if (cmd && strcmp(cmd, "DEL") == 0) return 0;
  put("{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"int-host-reporter: cannot start its runtime\",\"details\":\"");
  put_json_text(path);
  put(": ");
  put_json_text(strerror(err));
  put("\"}\n");
  return 1;
}

// dst = a + "/" + b; 0 when it does not fit.
static int join(char *dst, const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la + 1 + lb + 1 > PATH_MAX) return 0;
  memcpy(dst, a, la);
  dst[la] = '/';
  memcpy(dst + la + 1, b, lb + 1);
  return 1;
}

// The runtime's environment, less what is meant for the host's loader and node (LD_PRELOAD,
// LD_LIBRARY_PATH..., NODE_OPTIONS): ours loads only the libraries and code shipped beside it.
static int host_only(const char *var) {
  return strncmp(var, "LD_", 3) == 0 || strncmp(var, "NODE_OPTIONS=", 13) == 0;
}

static char **runtime_environ(void) {
  size_t n = 0;
  for (char **e = environ; e && *e; e++) n++;
  char **env = malloc((n + 1) * sizeof *env);
  if (!env) return environ;
  size_t k = 0;
  for (char **e = environ; e && *e; e++) {
    if (!host_only(*e)) env[k++] = *e;
  }
  env[k] = NULL;
  return env;
}

int main(int argc, char **argv) {
  static char self[PATH_MAX], dir[PATH_MAX], current[PATH_MAX], root[PATH_MAX];
  static char loader[PATH_MAX], libdir[PATH_MAX], node[PATH_MAX], script[PATH_MAX];
  const char *argv0 = argc > 0 && argv[0] ? argv[0] : "int-host-reporter";

  // Our own directory: /proc/self/exe, or argv[0] when /proc is not mounted.
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
  } else if (strchr(argv0, '/') == NULL || !realpath(argv0, self)) {
    return fail("/proc/self/exe", n < 0 ? errno : ENOENT);
  }
  strcpy(dir, self);
  char *slash = strrchr(dir, '/');
  if (!slash) return fail(self, ENOENT);
  if (slash == dir) dir[1] = 0;
  else *slash = 0;

  if (!join(current, dir, RUNTIME_DIR "/current")) return fail(dir, ENAMETOOLONG);
  if (!realpath(current, root)) return fail(current, errno);
  if (!join(loader, root, LOADER) || !join(libdir, root, "lib") || !join(node, root, "node") ||
      !join(script, root, "plugin.cjs")) {
    return fail(root, ENAMETOOLONG);
  }
  // Past execve, the loader's own failures would reach only stderr: check what it will open.
  if (access(loader, X_OK) != 0) return fail(loader, errno);
  if (access(node, X_OK) != 0) return fail(node, errno);
  if (access(script, R_OK) != 0) return fail(script, errno);

  // argv0, the loader's five option words, node, script, argv[1..], NULL
  char **args = malloc(((size_t)(argc > 1 ? argc - 1 : 0) + 10) * sizeof *args);
  if (!args) return fail(loader, ENOMEM);
  int k = 0;
  args[k++] = (char *)argv0;
  args[k++] = "--inhibit-cache";
  args[k++] = "--library-path";
  args[k++] = libdir;
  args[k++] = "--argv0";
  args[k++] = (char *)argv0;
  args[k++] = node;
  args[k++] = script;
  for (int i = 1; i < argc; i++) args[k++] = argv[i];
  args[k] = NULL;

  execve(loader, args, runtime_environ());
  return fail(loader, errno);
}
