/* LD_PRELOAD shim for test servers that can only be told a port (`openssl ocsp -port N`
 * listens on every address): a bind() to the wildcard address binds the loopback address
 * instead (IPv4 127.0.0.1; an IPv6 socket gets ::ffff:127.0.0.1, which still accepts IPv4
 * connections to 127.0.0.1), so the server is never reachable from another machine. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr*, socklen_t);

int bind(int fd, const struct sockaddr* addr, socklen_t len) {
  static bind_fn real_bind;
  if (real_bind == NULL) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
  if (addr != NULL && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in in4;
    memcpy(&in4, addr, sizeof in4);
    if (in4.sin_addr.s_addr == htonl(INADDR_ANY)) {
      in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      return real_bind(fd, (const struct sockaddr*)&in4, sizeof in4);
    }
  } else if (addr != NULL && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 in6;
    memcpy(&in6, addr, sizeof in6);
    if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) {
      int off = 0;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
      inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
      return real_bind(fd, (const struct sockaddr*)&in6, sizeof in6);
    }
  }
  return real_bind(fd, addr, len);
}
