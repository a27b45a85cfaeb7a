/*
 * Loopback-only networking for one process (loaded with LD_PRELOAD; Linux/glibc only).
 *
 * Why: libwebrtc (inside livekit's liblivekit_ffi.so) drops loopback adapters when it gathers ICE
 * candidates, so on a machine whose only usable address is 127.0.0.1 the real LiveKit client can
 * never connect. This shim makes getifaddrs() report a single interface that carries 127.0.0.1
 * under a non-"lo" name with IFF_LOOPBACK cleared (libwebrtc filters on both), so libwebrtc gathers
 * a 127.0.0.1 host candidate.
 *
 * It also refuses every connect()/sendto()/sendmsg()/sendmmsg() whose destination is not a
 * loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) with ENETUNREACH, counts the refusals
 * and, when CONVAI_LOOPBACK_LOG names a file, appends one line per refusal to it. Tests read the
 * counters through the exported convai_loopback_* functions to prove that nothing left loopback.
 *
 * With CONVAI_LOOPBACK_EMULATE_ISOLATED set, getifaddrs() reports only the loopback adapter "lo"
 * (flagged IFF_LOOPBACK), as on a machine whose only network is loopback: libwebrtc then gathers no
 * ICE candidate, which is how the SDK's diagnosis of that case is tested on a machine with a network.
 *
 * Built by convai_sync/loopback.py with the machine's C compiler on first use; shipped as source only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define SHIM_IFNAME "lkloop0"

static unsigned long refused_total;
static unsigned long refused_udp_connect;

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);
typedef int (*sendmmsg_fn)(int, struct mmsghdr *, unsigned int, int);

/* Exported for tests (ctypes): the shim is loaded, and what it refused so far. */
int convai_loopback_active(void) { return 1; }
unsigned long convai_loopback_refused_total(void) { return __atomic_load_n(&refused_total, __ATOMIC_SEQ_CST); }
unsigned long convai_loopback_refused_udp_connects(void) {
    return __atomic_load_n(&refused_udp_connect, __ATOMIC_SEQ_CST);
}

static int is_loopback(const struct sockaddr *addr) {
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return 1;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return -1; /* not an IP destination (AF_UNIX, AF_NETLINK, AF_UNSPEC ...): not ours to judge */
}

static int socket_type(int fd) {
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return 0;
    return type;
}

static void note_refusal(const char *call, int fd, const struct sockaddr *addr) {
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    int type = socket_type(fd);
    __atomic_add_fetch(&refused_total, 1, __ATOMIC_SEQ_CST);
    if (call[0] == 'c' && type == SOCK_DGRAM) __atomic_add_fetch(&refused_udp_connect, 1, __ATOMIC_SEQ_CST);
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    const char *path = getenv("CONVAI_LOOPBACK_LOG");
    if (path == NULL || path[0] == '\0') return;
    int log = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log < 0) return;
    char line[160];
    int n = snprintf(line, sizeof(line), "%s %s %s %u\n", call,
                     type == SOCK_DGRAM ? "udp" : (type == SOCK_STREAM ? "tcp" : "other"), host, port);
    if (n > 0) {
        ssize_t ignored = write(log, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        (void)ignored;
    }
    close(log);
}

/* 1 = allowed, 0 = refused (errno set). A NULL destination (a connected socket) is allowed. */
static int allowed(const char *call, int fd, const struct sockaddr *addr, socklen_t len) {
    if (addr == NULL || len < sizeof(sa_family_t)) return 1;
    if (is_loopback(addr) != 0) return 1;
    note_refusal(call, fd, addr);
    errno = ENETUNREACH;
    return 0;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static connect_fn real;
    if (real == NULL) real = (connect_fn)dlsym(RTLD_NEXT, "connect");
    if (!allowed("connect", fd, addr, len)) return -1;
    return real(fd, addr, len);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t len) {
    static sendto_fn real;
    if (real == NULL) real = (sendto_fn)dlsym(RTLD_NEXT, "sendto");
    if (!allowed("sendto", fd, addr, len)) return -1;
    return real(fd, buf, n, flags, addr, len);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    static sendmsg_fn real;
    if (real == NULL) real = (sendmsg_fn)dlsym(RTLD_NEXT, "sendmsg");
    if (msg != NULL && !allowed("sendmsg", fd, (const struct sockaddr *)msg->msg_name, msg->msg_namelen)) return -1;
    return real(fd, msg, flags);
}

int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int count, int flags) {
    static sendmmsg_fn real;
    if (real == NULL) real = (sendmmsg_fn)dlsym(RTLD_NEXT, "sendmmsg");
    for (unsigned int i = 0; msgs != NULL && i < count; i++) {
        const struct msghdr *msg = &msgs[i].msg_hdr;
        if (!allowed("sendmmsg", fd, (const struct sockaddr *)msg->msg_name, msg->msg_namelen)) return -1;
    }
    return real(fd, msgs, count, flags);
}

/* One allocation holding the entry, its name and its addresses, so freeifaddrs() is a free(). */
struct shim_ifaddrs {
    struct ifaddrs entry;
    struct sockaddr_in addr;
    struct sockaddr_in netmask;
    char name[IFNAMSIZ];
};

int getifaddrs(struct ifaddrs **out) {
    struct shim_ifaddrs *block = calloc(1, sizeof(*block));
    if (block == NULL) {
        errno = ENOMEM;
        return -1;
    }
    const char *isolated = getenv("CONVAI_LOOPBACK_EMULATE_ISOLATED");
    int emulate_isolated = isolated != NULL && isolated[0] != '\0';
    strncpy(block->name, emulate_isolated ? "lo" : SHIM_IFNAME, sizeof(block->name) - 1);
    block->addr.sin_family = AF_INET;
    block->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    block->netmask.sin_family = AF_INET;
    block->netmask.sin_addr.s_addr = htonl(0xff000000u);
    block->entry.ifa_next = NULL;
    block->entry.ifa_name = block->name;
    /* deliberately not IFF_LOOPBACK, unless emulating a loopback-only machine */
    block->entry.ifa_flags = IFF_UP | IFF_RUNNING | (emulate_isolated ? IFF_LOOPBACK : 0);
    block->entry.ifa_addr = (struct sockaddr *)&block->addr;
    block->entry.ifa_netmask = (struct sockaddr *)&block->netmask;
    *out = &block->entry;
    return 0;
}

void freeifaddrs(struct ifaddrs *ifa) { free(ifa); }
